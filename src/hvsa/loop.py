"""The annotation loop: rounds of select → annotate → fine-tune → label, for one video.

Each round writes everything a user (or a later pipeline stage) needs to inspect or continue
it: selected samples, annotations with clicks, the checkpoint, the labels and metrics.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from hvsa.annotator import Annotation, Annotator
from hvsa.clicks import region_clicks
from hvsa.config import Config
from hvsa.finetune import TrainingData, finetune
from hvsa.labels import compose, write_labels
from hvsa.ledger import Event, Ledger
from hvsa.metrics import miou
from hvsa.motion import load_or_compute_flow, resize_flow, resize_mask
from hvsa.network import SegNet, save_checkpoint
from hvsa.plots import plot_clicks_vs_miou
from hvsa.predict import Prediction, predict
from hvsa.samples import SampleSet, load_or_build_samples
from hvsa.scaling import (
    downsample_segments,
    frames_to_tensor,
    labels_to_tensor,
    upsample_argmax,
    work_size,
)
from hvsa.scoring import sample_features, sample_uncertainty
from hvsa.selection import select
from hvsa.uncertainty import pixel_uncertainty
from hvsa.video import VOID, ClassList, Video


@dataclass
class RoundResult:
    round: int
    clicks: int
    clicks_total: int
    samples: int
    labelled_fraction: float
    miou: float | None
    per_class: dict[str, float | None]
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class LoopState:
    """What a round changes: human labels, which pixels a human covered, samples used.

    ``provenance`` (N,H,W) int32 holds, per pixel, the ledger event that set its label, or 0
    where the label comes from the network.
    """

    human: np.ndarray
    annotated: np.ndarray
    provenance: np.ndarray
    used: set[int]
    clicks_total: int = 0


def manual_clicks(labels: np.ndarray, tolerance: float) -> int:
    """Clicks to annotate every frame in full with the click model: 100 % of manual cost."""
    return sum(region_clicks(m, tolerance).total for m in labels)


def _score(
    video: Video, labels: np.ndarray, classes: ClassList
) -> tuple[float | None, dict[str, float | None]]:
    if video.labels is None:
        return None, {}
    value, ious = miou(video.labels, labels, len(classes))
    return value, {
        n: (None if np.isnan(v) else float(v)) for n, v in zip(classes.names, ious, strict=True)
    }


def label_hash(a: Annotation) -> str:
    """Hash of an annotation's label patch and where it lies: what the ledger vouches for."""
    digest = hashlib.sha256()
    box = [a.frame, a.box[0].start, a.box[0].stop, a.box[1].start, a.box[1].stop]
    digest.update(json.dumps(box).encode())
    digest.update(np.ascontiguousarray(a.labels).tobytes())
    return digest.hexdigest()


def ledger_events(
    annotations: list[Annotation],
    samples: SampleSet,
    video: Video,
    classes: ClassList,
    campaign: str,
    round_no: int,
) -> list[Event]:
    """One ledger event per annotation, keyed so that a replayed round records nothing twice."""
    events = []
    for a in annotations:
        segment = int(samples.table.iloc[a.sample_id].segment)
        (y0, y1), (x0, x1) = (a.box[0].start, a.box[0].stop), (a.box[1].start, a.box[1].stop)
        values, counts = np.unique(a.labels[a.labels != VOID], return_counts=True)
        class_pixels = {classes.names[int(v)]: int(c) for v, c in zip(values, counts, strict=True)}
        clicks = {"regions": a.clicks.regions, "vertices": a.clicks.vertices}
        clicks["crossings"] = a.clicks.crossings
        digest = label_hash(a)
        events.append(
            Event(
                kind="annotation",
                campaign=campaign,
                video=video.name,
                round=round_no,
                sample_id=a.sample_id,
                frame=a.frame,
                frame_name=video.frame_names[a.frame],
                geometry={
                    "kind": samples.granularity,
                    "segment": segment,
                    "x0": x0,
                    "y0": y0,
                    "x1": x1,
                    "y1": y1,
                },  # fmt: skip
                annotator=a.annotator,
                tool=a.tool,
                clicks=a.clicks.total,
                clicks_detail=clicks,
                class_pixels=class_pixels,
                started=a.started,
                finished=a.finished,
                label_hash=digest,
                idempotency_key=f"{campaign}/{video.name}/{round_no}/{a.sample_id}/{digest}",
            )
        )
    return events


def _apply(
    state: LoopState, annotations: list[Annotation], samples: SampleSet, event_ids: list[int]
) -> None:
    for a, event_id in zip(annotations, event_ids, strict=True):
        _, _, mask = samples.region(a.sample_id)
        target = state.human[a.frame][a.box]
        given = mask & (a.labels != VOID)
        target[given] = a.labels[given]
        state.provenance[a.frame][a.box][given] = event_id
        state.annotated[a.frame][a.box] |= mask
        state.used.add(a.sample_id)
        state.clicks_total += a.clicks.total


def _candidates(
    state: LoopState, ids: np.ndarray, n_pixels: np.ndarray, min_unlabelled: float
) -> np.ndarray:
    """Sample ids not yet labelled and with enough unlabelled pixels left.

    ``ids`` is the (N,H,W) global sample-id map; a sample partly covered by labels of another
    granularity stays a candidate while ``min_unlabelled`` of it is still free.
    """
    free = np.bincount(ids[~state.annotated], minlength=len(n_pixels))
    share = free / n_pixels
    ok = share >= min_unlabelled
    if state.used:
        ok[list(state.used)] = False
    return np.flatnonzero(ok)


def _annotations_table(events: list[Event], event_ids: list[int]) -> pd.DataFrame:
    """The round's ledger events as a flat table (one row per annotation)."""
    rows = []
    for event, event_id in zip(events, event_ids, strict=True):
        row = asdict(event)
        geometry, detail = row.pop("geometry"), row.pop("clicks_detail")
        classes = row.pop("class_pixels")
        row = {"event_id": event_id, **row, "granularity": geometry.pop("kind"), **geometry}
        row |= {f"clicks_{k}": v for k, v in detail.items()}
        row["labelled_pixels"] = sum(classes.values())
        row["class_pixels"] = json.dumps(classes)
        rows.append(row)
    return pd.DataFrame(rows)


class AnnotationLoop:
    """One video, one network, rounds until the target mIoU, the round limit or the click cap."""

    def __init__(
        self,
        video: Video,
        model: SegNet,
        classes: ClassList,
        cfg: Config,
        annotator: Annotator,
        out: Path,
        device: torch.device,
    ):
        self.video, self.model, self.classes, self.cfg = video, model, classes, cfg
        self.annotator, self.out, self.device = annotator, Path(out), device
        self.full = video.size
        self.work = work_size(self.full, cfg.model.scale)
        cache = self.out / "cache"
        t0 = time.perf_counter()
        flow = load_or_compute_flow(video.frames, cfg.flow, cache, device)
        self.samples = load_or_build_samples(video.frames, cfg.samples, cache)
        self.prep_seconds = time.perf_counter() - t0
        self.frames_t = frames_to_tensor(video.frames, self.work)
        self.flow_t = torch.from_numpy(resize_flow(flow.forward, self.work))
        self.valid_t = torch.from_numpy(resize_mask(flow.valid_forward, self.work))
        self.small_segments = downsample_segments(self.samples.segments, self.work)
        self.sample_ids = self.samples.global_ids()
        n = len(video)
        self.state = LoopState(
            human=np.full((n, *self.full), VOID, np.uint8),
            annotated=np.zeros((n, *self.full), bool),
            provenance=np.zeros((n, *self.full), np.int32),
            used=set(),
        )
        self.ledger = Ledger(self.out / cfg.campaign.ledger)
        self.results: list[RoundResult] = []

    def _predict(self) -> Prediction:
        return predict(self.model, self.frames_t, self.cfg.output.batch_size, self.device)

    def _write_round(
        self,
        round_no: int,
        pred: Prediction,
        timings: dict[str, float],
        started: float,
        recorded: pd.DataFrame,
        selected: pd.DataFrame,
    ) -> RoundResult:
        t0 = time.perf_counter()
        labels = compose(
            upsample_argmax(pred.probs, self.full, self.cfg.output.batch_size), self.state.human
        )
        value, per_class = _score(self.video, labels, self.classes)
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
        np.savez_compressed(
            folder / "human.npz",
            labels=self.state.human,
            annotated=self.state.annotated,
            provenance=self.state.provenance,
        )
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
        )
        (folder / "metrics.json").write_text(json.dumps(result.__dict__, indent=2) + "\n")
        self.results.append(result)
        return result

    def _select(self, pred: Prediction, budget: int) -> pd.DataFrame:
        cand = _candidates(
            self.state,
            self.sample_ids,
            self.samples.table["n_pixels"].to_numpy(),
            self.cfg.samples.min_unlabelled,
        )
        if cand.size == 0:
            return self.samples.table.iloc[[]].assign(uncertainty=[], rank=[])
        table = self.samples.table
        unc_pix = pixel_uncertainty(pred.probs, self.cfg.uncertainty.measure)
        unc = sample_uncertainty(unc_pix, self.small_segments, table, self.full)[cand]
        feats = sample_features(pred.features, self.small_segments, table, self.full)[cand]
        s = self.cfg.selection
        seed = s.seed + len(self.results)
        picked = select(
            s.strategy, unc, feats, min(budget, cand.size), s.keep_fraction, s.kmeans_init, seed
        )
        chosen = table.iloc[cand[picked]].copy()
        chosen["uncertainty"] = unc[picked]
        chosen["rank"] = np.arange(len(chosen))
        return chosen

    def _annotate(self, selected: pd.DataFrame) -> list[Annotation]:
        annotations = self.annotator.annotate(
            self.video, self.samples, [int(i) for i in selected["sample_id"]]
        )
        cap = self.cfg.loop.max_clicks
        if cap is None:
            return annotations
        kept, total = [], self.state.clicks_total
        for a in annotations:  # the cap is never passed: later samples stay unlabelled
            if total + a.clicks.total > cap:
                break
            kept.append(a)
            total += a.clicks.total
        return kept

    def _training_data(self) -> TrainingData:
        return TrainingData(
            self.frames_t, labels_to_tensor(self.state.human, self.work), self.flow_t, self.valid_t
        )

    def run(self) -> list[RoundResult]:
        """Round 0 scores the starting network; rounds 1.. select, annotate, fine-tune, label."""
        loop = self.cfg.loop
        started = time.perf_counter()
        pred = self._predict()
        empty = self.samples.table.iloc[[]]
        first = self._write_round(
            0, pred, {"prepare": self.prep_seconds}, started, pd.DataFrame(), empty
        )
        bar = tqdm(range(1, loop.rounds + 1), desc=f"rounds ({self.video.name})", unit="round")
        bar.set_postfix(mIoU=_fmt(first.miou), clicks=0)
        for round_no in bar:
            last = self.results[-1].miou
            if last is not None and last >= loop.target_miou:
                break
            if loop.max_clicks is not None and self.state.clicks_total >= loop.max_clicks:
                break
            started = time.perf_counter()
            timings: dict[str, float] = {}
            t0 = time.perf_counter()
            selected = self._select(pred, loop.budget)
            timings["select"] = time.perf_counter() - t0
            if selected.empty:
                break
            t0 = time.perf_counter()
            annotations = self._annotate(selected)
            timings["annotate"] = time.perf_counter() - t0
            if not annotations:
                break
            events = ledger_events(
                annotations,
                self.samples,
                self.video,
                self.classes,
                self.cfg.campaign.name,
                round_no,
            )
            event_ids = self.ledger.append(events)
            _apply(self.state, annotations, self.samples, event_ids)
            t0 = time.perf_counter()
            finetune(
                self.model, self._training_data(), self.cfg.finetune, self.device, seed=round_no
            )
            timings["finetune"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            pred = self._predict()
            timings["predict"] = time.perf_counter() - t0
            recorded = _annotations_table(events, event_ids)
            result = self._write_round(round_no, pred, timings, started, recorded, selected)
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
        manual = (
            manual_clicks(self.video.labels, self.cfg.annotation.polygon_tolerance)
            if self.video.labels is not None
            else None
        )
        summary = {
            "video": str(self.video.path),
            "frames": len(self.video),
            "size": list(self.full),
            "granularity": self.samples.granularity,
            "rounds": len(self.results) - 1,
            "clicks": self.state.clicks_total,
            "manual_clicks": manual,
            "clicks_pct_of_manual": (100 * self.state.clicks_total / manual) if manual else None,
            "miou_start": self.results[0].miou,
            "miou_final": self.results[-1].miou,
            "round_seconds_median": float(np.median([r.seconds for r in self.results[1:]]))
            if len(self.results) > 1
            else None,
            "out": str(self.out),
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if self.video.labels is not None:
            plot_clicks_vs_miou(
                self.results, manual, self.out / "clicks_vs_miou.png", self.video.name
            )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
