"""The in-process annotation loop: one video, rounds of select → annotate → train → label.

Each round writes everything a user needs to inspect or continue it: selected samples,
annotations with clicks, the checkpoint, the labels and metrics. The round itself is the
engine's (``engine.py``), the same one the DVC stages of a campaign run; this driver keeps the
round's view (prediction, belief, calibration) and ``auto``'s state in memory between rounds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from hvsa.annotation.annotator import Annotator
from hvsa.annotation.ledger import Ledger
from hvsa.config import Config
from hvsa.data.label_io import write_labels
from hvsa.data.resources import peak_memory_mb, reset_peak_memory
from hvsa.data.video import ClassList, Video
from hvsa.method.auto import AutoChooser
from hvsa.method.motion import load_or_compute_flow
from hvsa.method.network import SegmentationNet, save_checkpoint
from hvsa.method.samples import load_or_build_samples, parse_granularity
from hvsa.rounds.chart import plot_clicks_vs_miou
from hvsa.rounds.engine import (
    Selection,
    annotate_round,
    label_round,
    measure_round,
    predict_video,
    record_round,
    select_round,
    train_round,
    video_contexts,
)
from hvsa.rounds.result import RoundResult
from hvsa.rounds.rules import check_settings, sample_set_names, stop_reason, wants_layers
from hvsa.rounds.state import LoopState
from hvsa.rounds.steps import VideoContext, layer_drawer, manual_clicks


class AnnotationLoop:
    """One video, one network, rounds until the target mIoU, the round limit or the click cap."""

    def __init__(
        self,
        video: Video,
        model: SegmentationNet,
        classes: ClassList,
        cfg: Config,
        annotator: Annotator,
        out: Path,
        device: torch.device,
        campaign: str = "run",
        cache: Path | None = None,
    ):
        """``cache`` holds flow and samples (default ``out/cache``); runs may share one."""
        self.video, self.model, self.classes, self.cfg = video, model, classes, cfg
        self.annotator, self.out, self.device = annotator, Path(out), device
        self.campaign = campaign
        check_settings(cfg)
        if wants_layers(cfg):
            layer_drawer(annotator)
        cache = Path(cache) if cache is not None else self.out / "cache"
        t0 = time.perf_counter()
        flow = load_or_compute_flow(video.frames, cfg.flow, cache, device)
        sets = {n: load_sample_set(video.frames, cfg, n, cache) for n in sample_set_names(cfg)}
        first = next(iter(sets.values()))
        # sample-set name → its context; ``auto`` holds several and picks one each round
        self.contexts = video_contexts(VideoContext.build(video, classes, cfg, flow, first), sets)
        self.prep_seconds = time.perf_counter() - t0
        self.ctx = next(iter(self.contexts.values()))
        self.state = LoopState.empty(len(video), video.size)
        self.ledger = Ledger(self.out / cfg.campaign.ledger)
        self.results: list[RoundResult] = []
        self.chooser = AutoChooser()

    def _write_round(
        self,
        round_no: int,
        labels: np.ndarray,
        timings: dict[str, float],
        started: float,
        recorded: pd.DataFrame,
        selected: pd.DataFrame,
    ) -> RoundResult:
        t0 = time.perf_counter()
        folder = self.out / f"round_{round_no:02d}"
        write_labels(
            folder, self.video.frame_names, labels, self.video.frames, self.state.human,
            self.classes, self.cfg.output.overlay_alpha,
        )  # fmt: skip
        selected.to_parquet(folder / "selected.parquet", index=False)
        recorded.to_parquet(folder / "annotations.parquet", index=False)
        self.state.save(folder / "human.npz")
        save_checkpoint(folder / "model.pt", self.model, self.classes, {"round": round_no})
        timings["write"] = time.perf_counter() - t0
        result = measure_round(
            round_no, recorded, self.state, labels, self.ctx, self.view, self.cfg,
            started, timings, round(peak_memory_mb(), 1),
        )  # fmt: skip
        (folder / "metrics.json").write_text(json.dumps(result.__dict__, indent=2) + "\n")
        self.results.append(result)
        return result

    def _done(self) -> bool:
        return stop_reason(self.results[-1].__dict__, self.cfg) is not None

    def run(self) -> list[RoundResult]:
        """Round 0 scores the starting network; rounds 1.. select, annotate, train, label."""
        cfg, state = self.cfg, self.state
        started = time.perf_counter()
        timings = {"prepare": self.prep_seconds}
        pred = predict_video(self.model, self.ctx, cfg, self.device)
        labels, self.view = label_round(self.ctx, pred, state, cfg, timings)
        nothing = Selection("frame", self.ctx.samples.table.iloc[[]], [])
        first = self._write_round(0, labels, timings, started, pd.DataFrame(), nothing.table)
        # a round limit far beyond any target (the benchmark's) is no total to show
        total = cfg.loop.rounds if cfg.loop.rounds <= 1000 else None
        bar = tqdm(range(1, cfg.loop.rounds + 1), total=total, desc=f"rounds ({self.video.name})",
                   unit="round")  # fmt: skip
        bar.set_postfix(mIoU=_fmt(first.miou), clicks=0)
        for round_no in bar:
            if self._done():
                break
            started = time.perf_counter()
            reset_peak_memory()
            timings = {}
            t0 = time.perf_counter()
            selection = select_round(self.contexts, self.view, state, cfg, self.chooser, round_no)
            timings["select"] = time.perf_counter() - t0
            if selection.table.empty:
                break
            t0 = time.perf_counter()
            annotations = annotate_round(self.contexts, selection, self.annotator, state, cfg)
            timings["annotate"] = time.perf_counter() - t0
            if not annotations:
                break
            recorded = record_round(
                self.ledger, annotations, self.contexts, selection, state, self.campaign,
                self.video.name, round_no,
            )  # fmt: skip
            t0 = time.perf_counter()
            trained = train_round(
                self.model, self.ctx, state, cfg, self.device, round_no, selection, self.view
            )
            pred = self.view.pred
            if trained is not None:  # a layer round leaves the network as it was
                timings["finetune"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                pred = predict_video(self.model, self.ctx, cfg, self.device)
                timings["predict"] = time.perf_counter() - t0
            labels, self.view = label_round(self.ctx, pred, state, cfg, timings)
            result = self._write_round(
                round_no, labels, timings, started, recorded, selection.table
            )
            bar.set_postfix(mIoU=_fmt(result.miou), clicks=result.clicks_total)
        self._finish()
        self.ledger.close()
        return self.results

    def _finish(self) -> None:
        rows = [
            {k: v for k, v in r.__dict__.items() if k not in ("per_class", "timings")}
            | {f"iou_{k}": v for k, v in r.per_class.items()}
            for r in self.results
        ]
        pd.DataFrame(rows).to_parquet(self.out / "rounds.parquet", index=False)
        labels = self.video.labels
        tolerance = self.cfg.annotation.polygon_tolerance
        manual = manual_clicks(labels, tolerance) if labels is not None else None
        seconds = [r.seconds for r in self.results[1:]]
        summary = {
            "video": str(self.video.path),
            "frames": len(self.video),
            "size": list(self.ctx.full),
            "granularity": self.cfg.samples.granularity,
            "rounds": len(self.results) - 1,
            "clicks": self.state.clicks_total,
            "manual_clicks": manual,
            "clicks_pct_of_manual": (100 * self.state.clicks_total / manual) if manual else None,
            "miou_start": self.results[0].miou,
            "miou_final": self.results[-1].miou,
            "round_seconds_median": float(np.median(seconds)) if seconds else None,
            "out": str(self.out),
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if labels is not None:
            plot_clicks_vs_miou(
                self.results, manual, self.out / "clicks_vs_miou.png", self.video.name
            )


def load_sample_set(frames: np.ndarray, cfg: Config, name: str, cache: Path):
    """The sample set ``name`` (frame, rectN, superpixel) of a video, from the cache if built."""
    kind, size = parse_granularity(name)
    scfg = cfg.samples.model_copy(update={"granularity": kind, "rect_size": size or 2})
    return load_or_build_samples(frames, scfg, cache)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
