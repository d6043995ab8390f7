"""The in-process annotation loop: one video, rounds of select → annotate → train → label.

Each round writes everything a user needs to inspect or continue it: selected samples,
annotations with clicks, the checkpoint, ``auto``'s state, the labels and metrics — into
``round_NN.partial/``, renamed to ``round_NN/`` when complete, so a round folder is always
whole. A run killed at any point resumes from its last complete round (``resume=True``):
the network, the human labels and ``auto``'s state are read back and the round's view is
recomputed from them (the engine is deterministic on them); a round half done is done again,
and the ledger's idempotency keys keep its events from being recorded twice. The round itself
is the engine's (``engine.py``), the same one the DVC stages of a campaign run; this driver
keeps the round's view (prediction, belief, calibration) and ``auto``'s state in memory between
rounds.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from hvsa.annotation.annotator import Annotator
from hvsa.annotation.existing import ExistingLabels
from hvsa.annotation.ledger import Ledger
from hvsa.config import Config
from hvsa.data.label_io import write_labels
from hvsa.data.resources import peak_memory_mb, reset_peak_memory
from hvsa.data.video import ClassList, Video
from hvsa.errors import HvsaError, crash_point
from hvsa.method.auto import AutoChooser
from hvsa.method.motion import load_or_compute_flow
from hvsa.method.network import SegmentationNet, load_checkpoint, save_checkpoint
from hvsa.method.predict import Prediction
from hvsa.method.samples import load_or_build_samples, parse_granularity
from hvsa.rounds.chart import plot_clicks_vs_miou
from hvsa.rounds.engine import (
    Selection,
    annotate_round,
    earlier_network_round,
    label_round,
    load_chooser,
    measure_round,
    predict_video,
    record_round,
    save_chooser,
    select_round,
    start_prediction,
    train_round,
    video_contexts,
)
from hvsa.rounds.result import RoundResult
from hvsa.rounds.rules import check_settings, sample_set_names, stop_reason, wants_layers
from hvsa.rounds.state import LoopState
from hvsa.rounds.steps import VideoContext, layer_drawer, manual_clicks, record_existing


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
        resume: bool = False,
        existing: ExistingLabels | None = None,
    ):
        """``cache`` holds flow and samples (default ``out/cache``); runs may share one.
        ``resume``: continue after the last complete round found in ``out``. ``existing``:
        labels a team already has, recorded in round 0 before the first selection."""
        self.video, self.model, self.classes, self.cfg = video, model, classes, cfg
        self.annotator, self.out, self.device = annotator, Path(out), device
        self.campaign, self.resume, self.existing = campaign, resume, existing
        check_settings(cfg)
        if wants_layers(cfg):
            layer_drawer(annotator)
        cache = Path(cache) if cache is not None else self.out / "cache"
        t0 = time.perf_counter()
        flow = load_or_compute_flow(video.frames, cfg.flow, cache, device)
        self.flow_seconds = time.perf_counter() - t0
        sets = {n: load_sample_set(video.frames, cfg, n, cache) for n in sample_set_names(cfg)}
        first = next(iter(sets.values()))
        # sample-set name → its context; ``auto`` holds several and picks one each round
        base = VideoContext.build(video, classes, cfg, flow, first, cache / SCRATCH)
        self.contexts = video_contexts(base, sets)
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
        final = self.out / f"round_{round_no:02d}"
        folder = final.with_name(final.name + PARTIAL)
        if folder.exists():
            shutil.rmtree(folder)
        before = self.out / f"round_{round_no - 1:02d}"
        write_labels(
            folder, self.video.frame_names, labels, self.video.frames, self.state.human,
            self.classes, self.cfg.output.overlay_alpha, self.view.fused, before,
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
        save_chooser(folder, self.chooser)
        crash_point("write", round_no)
        (folder / "metrics.json").write_text(json.dumps(result.__dict__, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        folder.replace(final)
        self.results.append(result)
        return result

    def _resume(self) -> int | None:
        """Read back the last complete round of ``out``; its number, or None if there is none."""
        for partial in self.out.glob(f"round_*{PARTIAL}"):
            shutil.rmtree(partial)
        done = complete_rounds(self.out)
        if not done:
            return None
        folder = self.out / f"round_{done[-1]:02d}"
        trained, _, _ = load_checkpoint(folder / "model.pt", self.device)
        self.model.load_state_dict(trained.state_dict())
        self.state = LoopState.load(folder / "human.npz")
        self.chooser = load_chooser(folder)
        for r in done:
            metrics = json.loads((self.out / f"round_{r:02d}" / "metrics.json").read_text())
            self.results.append(RoundResult(**metrics))
        pred = predict_video(self.model, self.ctx, self.cfg, self.device)
        self.labels, self.view = label_round(
            self.ctx, pred, self.state, self.cfg, earlier=self._earlier_prediction(),
            network=(self.model, self.device),
        )  # fmt: skip
        return done[-1]

    def _earlier_prediction(self) -> Prediction | None:
        """The prediction of the network before the current one, for the vote of two networks
        (``fusion.vote_networks``): the network of the round before the last round that
        fine-tuned (a round that did not, class layers, kept its network). None where the vote
        needs none, or the current network is the first."""
        if self.cfg.fusion.vote_networks < 2:
            return None
        trained = {r.round for r in self.results if "finetune" in r.timings}
        older = earlier_network_round(self.results[-1].round, trained.__contains__)
        if older is None:
            return None
        folder = self.out / f"round_{older:02d}"
        earlier, _, _ = load_checkpoint(folder / "model.pt", self.device)
        return predict_video(earlier, self.ctx, self.cfg, self.device)

    def _done(self) -> bool:
        return stop_reason(self.results[-1].__dict__, self.cfg) is not None

    def run(self) -> list[RoundResult]:
        """Round 0 scores the starting network; rounds 1.. select, annotate, train, label."""
        cfg = self.cfg
        last = self._resume() if self.resume else None
        if last is None:
            started = time.perf_counter()
            timings = {"flow": self.flow_seconds, "prepare": self.prep_seconds}
            recorded = pd.DataFrame()
            if self.existing is not None:
                recorded = record_existing(
                    self.ledger, self.existing, self.ctx, self.state, self.campaign,
                    self.video.name, cfg.annotation,
                )  # fmt: skip
            pred = start_prediction(self.model, self.ctx, self.state, cfg, self.device, timings)
            labels, self.view = label_round(
                self.ctx, pred, self.state, cfg, timings, network=(self.model, self.device)
            )
            self.labels = labels
            nothing = Selection("frame", self.ctx.samples.table.iloc[[]], [])
            self._write_round(0, labels, timings, started, recorded, nothing.table)
            last = 0
        state = self.state
        # a round limit far beyond any target (the benchmark's) is no total to show
        total = cfg.loop.rounds if cfg.loop.rounds <= 1000 else None
        bar = tqdm(range(last + 1, cfg.loop.rounds + 1), total=total, initial=last,
                   desc=f"rounds ({self.video.name})", unit="round")  # fmt: skip
        bar.set_postfix(mIoU=_fmt(self.results[-1].miou), clicks=state.clicks_total)
        for round_no in bar:
            if self._done():
                break
            started = time.perf_counter()
            reset_peak_memory()
            timings = {}
            t0 = time.perf_counter()
            selection = select_round(self.contexts, self.view, state, cfg, self.chooser, round_no)
            timings["select"] = time.perf_counter() - t0
            crash_point("select", round_no)
            if selection.table.empty:
                break
            t0 = time.perf_counter()
            annotations = annotate_round(
                self.contexts, selection, self.annotator, state, cfg, self.labels.__getitem__
            )
            timings["annotate"] = time.perf_counter() - t0
            if not annotations:
                break
            recorded = record_round(
                self.ledger, annotations, self.contexts, selection, state, self.campaign,
                self.video.name, round_no,
            )  # fmt: skip
            crash_point("record", round_no)
            t0 = time.perf_counter()
            trained = train_round(
                self.model, self.ctx, state, cfg, self.device, round_no, selection, self.view
            )
            crash_point("train", round_no)
            view = self.view
            pred, earlier, previous = view.network, view.earlier, (view, self.labels)
            if trained is not None:  # a layer round leaves the network as it was
                timings["finetune"] = time.perf_counter() - t0
                # the old network's own prediction votes with the new one where
                # fusion.vote_networks says so; the rest of the old view goes before the new
                # prediction is made: a video's probabilities are its largest arrays
                earlier = view.network if cfg.fusion.vote_networks > 1 else None
                pred = previous = view = self.view = None
                t0 = time.perf_counter()
                pred = predict_video(self.model, self.ctx, cfg, self.device)
                timings["predict"] = time.perf_counter() - t0
            labels, self.view = label_round(
                self.ctx, pred, state, cfg, timings, previous, earlier, (self.model, self.device)
            )
            self.labels = labels
            result = self._write_round(
                round_no, labels, timings, started, recorded, selection.table
            )
            bar.set_postfix(mIoU=_fmt(result.miou), clicks=result.clicks_total)
        self._finish()
        self.ledger.close()
        return self.results

    def _finish(self) -> None:
        rows = [
            {k: v for k, v in r.__dict__.items() if k not in LISTED}
            | {f"iou_{k}": v for k, v in r.per_class.items()}
            | dict(zip(("miou_low", "miou_high"), r.miou_interval or (None, None), strict=True))
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


PARTIAL = ".partial"  # a round folder being written
SCRATCH = "scratch"  # in the cache: a long video's probabilities and belief (data.spill)
# RoundResult fields that are not one value a round: rounds.parquet spreads or leaves them
LISTED = ("per_class", "per_class_estimate", "timings", "miou_interval", "frame_estimates")
RUN_FILE = "run.json"  # what a run was made from: a rerun resumes only from the same
# settings, except these, which only say how far to go: a resumed run may raise them
EXTENDABLE = {"loop.rounds", "loop.target_miou", "loop.max_clicks"}
RUN_OUTPUTS = ("summary.json", "rounds.parquet", "clicks_vs_miou.png", RUN_FILE)


def complete_rounds(out: Path) -> list[int]:
    """The rounds 0, 1, … of ``out`` written in full (a gap ends them)."""
    done = []
    while (out / f"round_{len(done):02d}" / "metrics.json").is_file():
        done.append(len(done))
    return done


def run_manifest(
    cfg: Config, video: Path, model: Path, existing: ExistingLabels | None = None
) -> dict:
    """What a run is made from: the video, the starting network's digest, every setting, and
    the labels it started with (``labels``: their digest and source; absent without)."""
    flat = {
        f"{section}.{key}": value
        for section, values in cfg.model_dump(mode="json").items()
        for key, value in values.items()
    }
    digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()
    out = {"video": str(Path(video).resolve()), "model": digest, "settings": flat}
    if existing is not None:
        out["labels"] = existing.digest()
        out["labels_from"] = {
            "source": existing.source,
            "format": existing.fmt,
            "frames": len(existing.labels),
            "clicks": existing.clicks,
        }
    return out


def open_out(out: Path, manifest: dict, ledger: str, fresh: bool = False) -> int | None:
    """Make ``out`` ready for a run; the last complete round of the run to resume there, or
    None when it starts from round 0.

    A run's folder resumes only with the same video, starting network and settings (those of
    :data:`EXTENDABLE` aside); otherwise the differences are named and nothing is touched.
    ``fresh`` removes the run that is there (rounds, ledger, summary; the cache stays).
    """
    path = out / RUN_FILE
    has_run = path.is_file() or (out / ledger).exists() or (out / "round_00").exists()
    if fresh and has_run:
        for folder in out.glob("round_*"):
            shutil.rmtree(folder)
        for name in (*RUN_OUTPUTS, ledger, f"{ledger}-wal", f"{ledger}-shm"):
            (out / name).unlink(missing_ok=True)
        has_run = False
    if has_run and not path.is_file():
        raise HvsaError(
            f"{out} holds a run without {RUN_FILE}: --fresh to start over, or another --out"
        )
    if has_run:
        old = json.loads(path.read_text())
        changed = [k for k in ("video", "model", "labels") if old.get(k) != manifest.get(k)]
        before, now = old.get("settings", {}), manifest["settings"]
        changed += [
            f"{k} {before.get(k)!r} → {now.get(k)!r}"
            for k in sorted(set(before) | set(now))
            if k not in EXTENDABLE and before.get(k) != now.get(k)
        ]
        if changed:
            raise HvsaError(
                f"{out} holds a run made differently ({'; '.join(changed[:3])}"
                f"{'; …' if len(changed) > 3 else ''}): run it with the same settings to resume, "
                "or add --fresh to start over"
            )
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(path)
    done = complete_rounds(out) if has_run else []
    return done[-1] if done else None


def load_sample_set(frames: np.ndarray, cfg: Config, name: str, cache: Path):
    """The sample set ``name`` (frame, rectN, superpixel) of a video, from the cache if built."""
    kind, size = parse_granularity(name)
    scfg = cfg.samples.model_copy(update={"granularity": kind, "rect_size": size or 2})
    return load_or_build_samples(frames, scfg, cache)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
