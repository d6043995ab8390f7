"""The in-process annotation loop: rounds of select → annotate → fine-tune → label, one video.

Each round writes everything a user needs to inspect or continue it: selected samples,
annotations with clicks, the checkpoint, the labels and metrics. The steps themselves live in
``steps.py`` and are shared with the DVC stages of a campaign.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from hvsa.annotation.annotator import Annotator, layer_id
from hvsa.annotation.ledger import Ledger
from hvsa.config import Config
from hvsa.data.label_io import write_labels
from hvsa.data.resources import peak_memory_mb, reset_peak_memory
from hvsa.data.video import ClassList, Video
from hvsa.errors import HvsaError
from hvsa.method.auto import (
    LAYERS,
    AutoChooser,
    Offer,
    class_pixels,
    estimated_iou,
    known_pixels,
    promise,
    region_class_pixels,
)
from hvsa.method.metrics import mean_iou
from hvsa.method.motion import load_or_compute_flow
from hvsa.method.network import SegmentationNet, save_checkpoint
from hvsa.method.predict import Prediction, predict
from hvsa.method.samples import load_or_build_samples, parse_granularity
from hvsa.method.uncertainty import pixel_uncertainty
from hvsa.rounds.chart import plot_clicks_vs_miou
from hvsa.rounds.result import RoundResult
from hvsa.rounds.state import LoopState
from hvsa.rounds.steps import (
    VideoContext,
    annotate_layers,
    annotate_samples,
    belief_labels,
    class_estimates,
    compose_labels,
    finetune_model,
    fusion_settings,
    layer_choice,
    layer_drawer,
    manual_clicks,
    record_annotations,
    sample_clicks,
    score,
    select_layers,
    select_samples,
)


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
        auto = cfg.samples.granularity == "auto"
        if auto:
            _check_auto(cfg)
        if cfg.layers.enabled or (auto and LAYERS in cfg.auto.granularities):
            _check_layers(cfg, annotator)
        cache = Path(cache) if cache is not None else self.out / "cache"
        t0 = time.perf_counter()
        flow = load_or_compute_flow(video.frames, cfg.flow, cache, device)
        # granularity name → its context; ``auto`` holds several and picks one each round
        self.contexts: dict[str, VideoContext] = {}
        names = [g for g in cfg.auto.granularities if g != LAYERS] if auto else [None]
        for name in names:
            scfg = cfg.samples
            if name is not None:
                kind, size = parse_granularity(name)
                scfg = scfg.model_copy(update={"granularity": kind, "rect_size": size or 2})
            samples = load_or_build_samples(video.frames, scfg, cache)
            ctx = VideoContext.build(video, classes, cfg, flow, samples)
            self.contexts[name or samples.granularity] = ctx
        self.prep_seconds = time.perf_counter() - t0
        self.ctx = next(iter(self.contexts.values()))
        self.state = LoopState.empty(len(video), video.size)
        self.ledger = Ledger(self.out / cfg.campaign.ledger)
        self.results: list[RoundResult] = []
        self.chooser = AutoChooser()

    def _predict(self) -> Prediction:
        return predict(self.model, self.ctx.frames_t, self.cfg.output.batch_size, self.device)

    def _write_round(
        self,
        round_no: int,
        pred: Prediction,
        timings: dict[str, float],
        started: float,
        recorded: pd.DataFrame,
        selected: pd.DataFrame,
    ) -> tuple[RoundResult, Prediction]:
        t0 = time.perf_counter()
        fcfg = self.fusion_cfg = fusion_settings(self.ctx, pred, self.state, self.cfg)
        timings["calibrate"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        labels, belief = compose_labels(self.ctx, pred, self.state, self.cfg, fcfg)
        timings["labels"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        value, per_class = score(self.video, labels, self.classes)
        folder = self.out / f"round_{round_no:02d}"
        write_labels(
            folder,
            self.video.frame_names,
            labels,
            self.video.frames,
            self.state.human,
            self.classes,
            self.cfg.output.overlay_alpha,
        )
        selected.to_parquet(folder / "selected.parquet", index=False)
        recorded.to_parquet(folder / "annotations.parquet", index=False)
        self.state.save(folder / "human.npz")
        save_checkpoint(folder / "model.pt", self.model, self.classes, {"round": round_no})
        timings["write"] = time.perf_counter() - t0
        result = RoundResult(
            round_no,
            int(recorded["clicks"].sum()) if len(recorded) else 0,
            self.state.clicks_total,
            len(recorded),
            float(self.state.annotated.mean()),
            value,
            per_class,
            time.perf_counter() - started,
            {k: round(v, 3) for k, v in timings.items()},
            round(peak_memory_mb(), 1),
            fcfg.guided_radius if self.cfg.fusion.enabled else None,
        )
        (folder / "metrics.json").write_text(json.dumps(result.__dict__, indent=2) + "\n")
        self.results.append(result)
        return result, belief

    def _select(
        self, pred: Prediction, belief: Prediction, round_no: int
    ) -> tuple[VideoContext, pd.DataFrame, list[tuple[int, int]]]:
        """This round's samples (their context and table) or class layers (then the table lists
        the layers): the selector's, class layers once they can be priced, or ``auto``'s."""
        cfg = self.cfg
        if cfg.samples.granularity == "auto":
            return self._select_auto(pred, belief, round_no)
        if cfg.layers.enabled:
            layers = select_layers(self.ctx, pred, belief, self.state, cfg, self.fusion_cfg)
            if layers:
                return self.ctx, _layer_table(layers, self.classes), layers
        return self.ctx, select_samples(self.ctx, belief, self.state, cfg, round_no), []

    def _select_auto(
        self, pred: Prediction, belief: Prediction, round_no: int
    ) -> tuple[VideoContext, pd.DataFrame, list[tuple[int, int]]]:
        """``auto`` (``auto.py``): each kind of sample in ``auto.granularities`` offers a batch
        (its selector's, or the class layers'); the batch of highest estimated mIoU rise per
        click, scaled by what that kind's last batch delivered, is labelled. Whole frames while
        nothing can be estimated yet."""
        cfg, state = self.cfg, self.state
        estimates = class_estimates(self.ctx, pred, state, cfg, self.fusion_cfg)
        frame_ctx = self.contexts["frame"]
        if estimates is None:
            chosen = select_samples(frame_ctx, belief, state, self._cfg_for("frame"), round_no)
            return frame_ctx, chosen.assign(granularity="frame"), []
        quality = estimates[0]
        # shared by every granularity's offer: the belief's uncertainty and labels
        unc_pix = pixel_uncertainty(belief.probs, cfg.uncertainty.measure)
        predicted = belief_labels(belief.probs)
        soft = class_pixels(belief.probs)
        totals = soft.sum(0)
        h, w = belief.probs.shape[2:]
        full_scale = self.ctx.full[0] * self.ctx.full[1] / (h * w)
        known = known_pixels(state.human, state.layers, len(self.classes))
        ious = estimated_iou(quality, known, totals * full_scale)
        now = mean_iou(ious)
        self.chooser.settle(ious)
        batches: dict[str, tuple[VideoContext, pd.DataFrame, list[tuple[int, int]]]] = {}
        offers: dict[str, Offer] = {}
        for name in cfg.auto.granularities:
            if name == LAYERS:
                layers = layer_choice(estimates, belief, state, cfg)
                if not layers:
                    continue
                frames, cls = np.array(layers).T
                covered = np.zeros(len(quality))
                np.add.at(covered, cls, soft[frames, cls])
                clicks = float(np.nansum(estimates[1][cls]))
                table = _layer_table(layers, self.classes)
                batches[name] = (self.ctx, table, layers)
            else:
                ctx = self.contexts[name]
                table = select_samples(ctx, belief, state, self._cfg_for(name), round_no, unc_pix)
                if table.empty:
                    continue
                frames, segs = table["frame"].to_numpy(), table["segment"].to_numpy()
                covered = region_class_pixels(belief.probs, ctx.small_segments, frames, segs)
                covered = covered.sum(0)
                clicks = float(_batch_clicks(ctx, predicted, table, cfg).sum())
                batches[name] = (ctx, table, [])
            offers[name] = Offer(promise(quality, covered, totals), clicks)
        if not offers:
            return self.ctx, self.ctx.samples.table.iloc[[]], []
        name = self.chooser.choose(offers, ious)
        ctx, chosen, layers = batches[name]
        chosen = chosen.assign(granularity=name, estimated_miou=now)
        for k, offer in offers.items():  # what each kind offered, for the record
            chosen[f"promise_{k}"] = offer.per_click
            chosen[f"yield_{k}"] = self.chooser.yields.get(k, np.nan)
        return ctx, chosen, layers

    def _cfg_for(self, name: str) -> Config:
        """The config with ``auto.budgets[name]`` samples a round."""
        budget = self.cfg.auto.budgets[name]
        return self.cfg.model_copy(
            update={"loop": self.cfg.loop.model_copy(update={"budget": budget})}
        )

    def _done(self) -> bool:
        loop, last = self.cfg.loop, self.results[-1].miou
        if last is not None and last >= loop.target_miou:
            return True
        return loop.max_clicks is not None and self.state.clicks_total >= loop.max_clicks

    def run(self) -> list[RoundResult]:
        """Round 0 scores the starting network; rounds 1.. select, annotate, fine-tune, label."""
        cfg = self.cfg
        started = time.perf_counter()
        pred = self._predict()
        empty = self.ctx.samples.table.iloc[[]]
        first, belief = self._write_round(
            0, pred, {"prepare": self.prep_seconds}, started, pd.DataFrame(), empty
        )
        bar = tqdm(range(1, cfg.loop.rounds + 1), desc=f"rounds ({self.video.name})", unit="round")
        bar.set_postfix(mIoU=_fmt(first.miou), clicks=0)
        for round_no in bar:
            if self._done():
                break
            started = time.perf_counter()
            reset_peak_memory()
            timings: dict[str, float] = {}
            t0 = time.perf_counter()
            ctx, selected, layers = self._select(pred, belief, round_no)
            timings["select"] = time.perf_counter() - t0
            if selected.empty:
                break
            t0 = time.perf_counter()
            if layers:
                annotations = annotate_layers(ctx, layers, self.annotator, self.state, cfg)
            else:
                annotations = annotate_samples(ctx, selected, self.annotator, self.state, cfg)
            timings["annotate"] = time.perf_counter() - t0
            if not annotations:
                break
            recorded = record_annotations(
                self.ledger,
                annotations,
                ctx,
                self.state,
                self.campaign,
                self.video.name,
                round_no,
            )
            if not layers:  # a layer teaches the network nothing (``state.py``): it stays
                t0 = time.perf_counter()
                finetune_model(self.model, self.ctx, self.state, cfg, self.device, round_no, pred)
                timings["finetune"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                pred = self._predict()
                timings["predict"] = time.perf_counter() - t0
            result, belief = self._write_round(round_no, pred, timings, started, recorded, selected)
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


def _check_auto(cfg: Config) -> None:
    """Refuse, before any work, an ``auto`` whose kinds of sample could not all be offered."""
    kinds = cfg.auto.granularities
    if not cfg.fusion.enabled:
        raise HvsaError(
            "granularity auto needs fusion.enabled: it prices samples by how well the label "
            "generator does on labelled frames left out"
        )
    if "frame" not in kinds:
        raise HvsaError(
            "auto.granularities must list frame: auto prices samples against frames labelled "
            "in full, and sends frames until it has enough of them"
        )
    if cfg.layers.enabled and LAYERS not in kinds:
        raise HvsaError(
            "layers.enabled does nothing with granularity auto: list layers in "
            "auto.granularities instead"
        )
    for name in kinds:
        if name == LAYERS:
            continue
        try:
            parse_granularity(name)
        except HvsaError:
            raise HvsaError(
                f"auto.granularities: unknown kind {name!r}: use frame, superpixel, rectN "
                "(N px) or layers"
            ) from None
        if cfg.auto.budgets.get(name, 0) < 1:
            raise HvsaError(
                f"auto.budgets needs at least 1 sample a round for {name} (has "
                f"{cfg.auto.budgets.get(name)})"
            )


def _check_layers(cfg: Config, annotator: Annotator) -> None:
    """Refuse, before any work, a run whose class layers could never be sent or used."""
    if not cfg.fusion.enabled:
        raise HvsaError(
            "layers.enabled (or layers in auto.granularities) needs fusion.enabled: class "
            "layers act through the label generator"
        )
    g = cfg.samples.granularity
    if g not in ("frame", "auto"):
        raise HvsaError(
            f"layers.enabled needs whole frames (granularity {g}): layers start once "
            "fusion.calibration_probes frames are labelled in full, which rectangles and "
            "superpixels never make"
        )
    layer_drawer(annotator)


def _batch_clicks(
    ctx: VideoContext, predicted: np.ndarray, table: pd.DataFrame, cfg: Config
) -> np.ndarray:
    """Expected clicks of a selected batch: the selector's own estimate, or the click model run
    on the belief's labels ``predicted`` (N,h,w)."""
    if "expected_clicks" in table:
        return table["expected_clicks"].to_numpy()
    return sample_clicks(ctx, predicted, table["sample_id"].to_numpy(), cfg)


def _layer_table(layers: list[tuple[int, int]], classes: ClassList) -> pd.DataFrame:
    """A layer round's selection, as selected.parquet records it."""
    return pd.DataFrame(
        {
            "sample_id": [layer_id(f, c, len(classes)) for f, c in layers],
            "frame": [f for f, _ in layers],
            "kind": "layer",
            "class_id": [c for _, c in layers],
            "class_name": [classes.names[c] for _, c in layers],
            "rank": np.arange(len(layers)),
        }
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
