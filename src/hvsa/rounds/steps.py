"""The steps of one round, shared by the in-process loop and the DVC stages.

Each function takes what it needs in memory and returns its result; reading and writing files
is left to the caller (``loop.py`` keeps everything in memory, ``stages/`` goes through disk).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch

from hvsa.annotation.annotator import Annotation, Annotator
from hvsa.annotation.existing import ExistingLabels, existing_events
from hvsa.annotation.ledger import Event, Ledger
from hvsa.config import AnnotationConfig, Config, FusionConfig
from hvsa.data.chunks import LazyFrames
from hvsa.data.label_io import compose
from hvsa.data.scaling import (
    WorkFrames,
    downsample_segments,
    frames_to_tensor,
    resize_labels,
    upsample_argmax,
    work_size,
)
from hvsa.data.spill import clear_stale
from hvsa.data.video import VOID, ClassList, Video
from hvsa.errors import HvsaError
from hvsa.method.auto import estimated_iou, known_pixels
from hvsa.method.calibrate import calibrated, class_quality, leave_one_out_probes, probe_frames
from hvsa.method.class_layers import choose_layers, class_costs, doubt
from hvsa.method.clicks import region_clicks
from hvsa.method.finetune import TrainingData, finetune
from hvsa.method.fusion import fuse
from hvsa.method.gain import expected_clicks, pixel_gain, sample_gain, select_gain
from hvsa.method.metrics import miou
from hvsa.method.motion import Flow, resize_flow, resize_mask
from hvsa.method.network import SegmentationNet, pick_device
from hvsa.method.predict import Prediction, predict, predict_mirrored
from hvsa.method.sample_scores import sample_features, sample_uncertainty
from hvsa.method.samples import SampleSet
from hvsa.method.selection import (
    coverage_kernel,
    coverage_scores,
    select,
    select_coverage,
    select_spread,
)
from hvsa.method.uncertainty import pixel_uncertainty
from hvsa.rounds.state import LoopState


@dataclass
class VideoContext:
    """A video prepared for rounds: its samples and flow, and tensors at the working size."""

    video: Video
    classes: ClassList
    samples: SampleSet
    flow: Flow
    full: tuple[int, int]
    work: tuple[int, int]
    frames_t: torch.Tensor | WorkFrames  # (N,3,h,w) float
    flow_t: torch.Tensor | WorkFrames  # (N-1,h,w,2) forward flow at the working size
    valid_t: torch.Tensor | WorkFrames  # (N-1,h,w) bool
    small_segments: np.ndarray
    # where a long video's probabilities and belief are kept (DiskTensor); None = in memory
    scratch: Path | None = None

    @classmethod
    def build(
        cls,
        video: Video,
        classes: ClassList,
        cfg: Config,
        flow: Flow,
        samples: SampleSet,
        scratch: Path | None = None,
    ) -> VideoContext:
        """``scratch``: a folder for a lazily read video's per-frame tensors (ignored for a
        video in memory, whose tensors stay in memory too)."""
        work = work_size(video.size, cfg.model.scale)
        n = len(video)
        lazy = isinstance(video.frames, LazyFrames)
        scratch = Path(scratch) if lazy and scratch is not None else None
        if scratch is not None:
            clear_stale(scratch)
        if lazy:
            # a long video: its tensors are made a batch at a time when indexed
            frames_t = WorkFrames(video.frames, lambda f: frames_to_tensor(f, work), (n, 3, *work))
            flow_t = WorkFrames(
                flow.forward, lambda f: torch.from_numpy(resize_flow(f, work)), (n - 1, *work, 2)
            )
            valid_t = WorkFrames(
                flow.valid_forward, lambda m: torch.from_numpy(resize_mask(m, work)), (n - 1, *work)
            )
        else:
            frames_t = frames_to_tensor(video.frames, work)
            flow_t = torch.from_numpy(resize_flow(np.asarray(flow.forward), work))
            valid_t = torch.from_numpy(resize_mask(np.asarray(flow.valid_forward), work))
        return cls(
            video=video,
            classes=classes,
            samples=samples,
            flow=flow,
            full=video.size,
            work=work,
            frames_t=frames_t,
            flow_t=flow_t,
            valid_t=valid_t,
            small_segments=downsample_segments(samples.segments, work),
            scratch=scratch,
        )

    def with_samples(self, samples: SampleSet) -> VideoContext:
        """The same video with another sample set (``auto`` holds several): the frames, flow
        and their tensors are shared, not built again."""
        return replace(
            self,
            samples=samples,
            small_segments=downsample_segments(samples.segments, self.work),
        )


def manual_clicks(labels: np.ndarray, tolerance: float) -> int:
    """Clicks to annotate every frame in full with the click model: 100 % of manual cost."""
    return sum(region_clicks(m, tolerance).total for m in labels)


def score(
    video: Video, labels: np.ndarray, classes: ClassList
) -> tuple[float | None, dict[str, float | None]]:
    if video.labels is None:
        return None, {}
    value, ious = miou(video.labels, labels, len(classes))
    return value, class_values(classes, ious)


def class_values(classes: ClassList, values: np.ndarray) -> dict[str, float | None]:
    """(C,) per-class values by class name, None where NaN (JSON has no NaN)."""
    return {
        n: None if np.isnan(v) else float(v) for n, v in zip(classes.names, values, strict=True)
    }


def belief_labels(probs: torch.Tensor) -> np.ndarray:
    """(N,h,w) uint8 most likely class of each pixel of a belief (N,C,h,w).

    ``max().indices`` is the argmax, several times faster than ``argmax()`` across dim 1 on CPU.
    """
    out = np.empty((len(probs), *probs.shape[2:]), np.uint8)
    for start in range(0, len(probs), 16):  # a few frames at a time: probs may be on disk
        out[start : start + 16] = probs[start : start + 16].max(1).indices.to(torch.uint8)
    return out


def sample_clicks(
    ctx: VideoContext, predicted: np.ndarray, rows: np.ndarray, cfg: Config
) -> np.ndarray:
    """Expected clicks of the samples ``rows`` of ``ctx``: the click model run on the labels
    ``predicted`` (N,h,w) at the working size (``gain.expected_clicks``)."""
    return expected_clicks(
        predicted, ctx.samples.table, rows, ctx.full, ctx.samples.granularity,
        cfg.annotation.polygon_tolerance,
    )  # fmt: skip


def select_samples(
    ctx: VideoContext,
    pred: Prediction,
    state: LoopState,
    cfg: Config,
    round_no: int,
    unc_pix: np.ndarray | None = None,
) -> pd.DataFrame:
    """This round's samples for the annotator, with their uncertainty and rank.

    ``unc_pix`` is ``pred``'s pixel uncertainty when the caller has it (``auto`` selects from
    one belief for several granularities).
    """
    table = ctx.samples.table
    n_pixels = table["n_pixels"].to_numpy()
    cand = state.candidates(ctx.samples, cfg.samples.min_unlabelled)
    if cand.size == 0:
        return table.iloc[[]].assign(uncertainty=[], rank=[])
    if unc_pix is None:
        unc_pix = pixel_uncertainty(pred.probs, cfg.uncertainty.measure)
    unc = sample_uncertainty(unc_pix, ctx.small_segments, table, ctx.full)[cand]
    s = cfg.selection
    budget = min(cfg.loop.budget, cand.size)

    def cost_of(idx: np.ndarray) -> np.ndarray:
        """Expected clicks of candidates ``idx``: the click model run on the predicted labels."""
        return sample_clicks(ctx, belief_labels(pred.probs), cand[idx], cfg)

    if s.strategy == "gain":
        gains = sample_gain(pixel_gain(pred.probs), ctx.small_segments, table, cand)
        picked, cost = select_gain(gains, cost_of, budget, s.gain_pool)
    elif s.strategy == "coverage" and (full := _spread_from(ctx, state, cfg)) is not None:
        picked = select_spread(len(ctx.video), full, table["frame"].to_numpy()[cand], budget)
    elif s.strategy == "coverage":
        picked = _select_coverage(unc * n_pixels[cand], table["frame"].to_numpy()[cand],
                                  len(ctx.video), budget, cfg, cost_of)  # fmt: skip
    else:
        # pooled features are for select() (paper and diversity cluster them); gain and coverage
        # never read them, so they skip this per-frame upsampling
        feats = sample_features(pred.features, ctx.small_segments, table, ctx.full)[cand]
        picked = select(
            s.strategy, unc, feats, budget, s.keep_fraction, s.kmeans_init, s.seed + round_no
        )
    chosen = table.iloc[cand[picked]].copy()
    chosen["uncertainty"] = unc[picked]
    if s.strategy == "gain":
        chosen["expected_gain"] = gains[picked]
        chosen["expected_clicks"] = cost
    chosen["rank"] = np.arange(len(chosen))
    return chosen


def _spread_from(ctx: VideoContext, state: LoopState, cfg: Config) -> np.ndarray | None:
    """The frames labelled in full when this round's whole frames are placed by distance alone
    (:func:`select_spread`: while fewer than ``selection.spread_frames`` are), else None."""
    if ctx.samples.granularity != "frame" or cfg.selection.spread_frames <= 0:
        return None
    full = np.flatnonzero(state.annotated.reshape(len(ctx.video), -1).all(1))
    return full if full.size < cfg.selection.spread_frames else None


def _select_coverage(
    mass: np.ndarray,
    frames: np.ndarray,
    n_frames: int,
    budget: int,
    cfg: Config,
    cost_of: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """The coverage selector; per click, pricing only the ``gain_pool × budget`` best covers
    (the click model is too slow for every rectangle of a video, as for the gain selector)."""
    s, f = cfg.selection, cfg.fusion
    frame_mass = np.bincount(frames, weights=mass, minlength=n_frames)
    kernel = coverage_kernel(n_frames, s.coverage_reach, f.distance_power, f.network_weight)
    if not s.coverage_per_click:
        return select_coverage(mass, frames, frame_mass, budget, kernel)
    first = coverage_scores(mass, frames, frame_mass, kernel)
    pool = np.argsort(-first, kind="stable")[: max(budget, s.gain_pool * budget)]
    cost = cost_of(pool)
    return pool[select_coverage(mass[pool], frames[pool], frame_mass, budget, kernel, cost)]


class Estimates(NamedTuple):
    """What the probes of a round say (:func:`class_estimates`)."""

    quality: np.ndarray  # (C,) IoU per class on the probes fused without their labels
    cost: np.ndarray  # (C,) mean clicks of each class's layer on frames labelled in full
    full: np.ndarray  # (N,) bool: frames labelled in full
    probe_cms: np.ndarray  # (P,C,C) each probe's confusion
    probe_counts: np.ndarray  # (P,C,B,C) each probe's reliability counts (method/estimate.py)
    # (P,C,B,C) the same with the network's own vote at the probes: the interval's high end
    own_counts: np.ndarray | None = None


def estimate_probes(state: LoopState, cfg: Config, least: int | None = None) -> np.ndarray:
    """The frames labelled in full that are hidden in turn (``fusion.calibration_probes`` of
    them, spread in time); empty while fewer are. ``least``: a round's estimate of its labels
    takes as many as there are once this many are (``fusion.estimate_from``)."""
    full = state.annotated.reshape(len(state.annotated), -1).all(1)
    in_full = np.where(full[:, None, None], state.human, VOID)
    count = cfg.fusion.calibration_probes
    labelled = int((in_full != VOID).reshape(len(in_full), -1).any(1).sum())
    if least is not None and least <= labelled < count:
        count = labelled
    return probe_frames(in_full, count)


def unseen_votes(
    model: SegmentationNet, ctx: VideoContext, probes: np.ndarray, cfg: Config,
    device: torch.device,
) -> dict[int, torch.Tensor]:  # fmt: skip
    """The network's vote at each of the estimate's ``probes`` (:func:`estimate_probes`) as if
    it had not been fine-tuned on them: the probe's frame mirrored (``predict.predict_mirrored``).
    Why: the probes stand in for the frames nobody labelled, and at 1 Hz, where the network
    decides most pixels, its own vote there made the estimate read 4.4-7.4 points high on
    0001TP (-1.3 to +0.1 with the mirror image; ``benchmarks/estimate_probe.py``). With
    ``fusion.vote_networks: 2`` it is the current network's mirror image alone, not the mean
    of two networks' (the earlier network was fine-tuned on most probes too)."""
    if probes.size == 0:
        return {}
    votes = predict_mirrored(model, ctx.frames_t[torch.from_numpy(probes)],
                             cfg.output.batch_size, device)  # fmt: skip
    return {int(p): v for p, v in zip(probes, votes, strict=True)}


def class_estimates(
    ctx: VideoContext,
    pred: Prediction,
    state: LoopState,
    cfg: Config,
    fcfg: FusionConfig,
    unseen: dict[int, torch.Tensor] | None = None,
    probes: np.ndarray | None = None,
) -> Estimates | None:
    """What frames labelled in full say when each is fused without its own labels (network
    ``pred``, the round's fusion settings ``fcfg``): each class's IoU there, each layer's
    price (``layers.class_costs``) and the counts the round's estimate calibrates the belief
    by (with the network's vote at each probe from ``unseen`` where given,
    :func:`unseen_votes`) at ``probes`` (default :func:`estimate_probes`: none while fewer
    than ``fusion.calibration_probes`` frames are labelled in full); None without probes.
    """
    full = state.annotated.reshape(len(state.annotated), -1).all(1)
    probes = estimate_probes(state, cfg) if probes is None else probes
    if probes.size == 0:
        return None
    cms, counts, own = leave_one_out_probes(
        pred.probs, state.human, ctx.video.frames, ctx.flow, fcfg, state.annotated, probes,
        unseen,
    )  # fmt: skip
    cost = class_costs(state.human, full, len(ctx.classes), cfg.annotation.polygon_tolerance)
    return Estimates(class_quality(cms.sum(0)), cost, full, cms, counts, own)


def estimated_class_iou(
    quality: np.ndarray, state: LoopState, belief: Prediction, totals: np.ndarray,
    ctx: VideoContext,
) -> np.ndarray:  # fmt: skip
    """(C,) each class's estimated IoU over the whole video (``hvsa.method.auto``): the pixels
    people labelled right, the rest right at the leave-one-out ``quality`` of
    :func:`class_estimates`, weighed by ``totals``, the belief's expected pixels of each class
    (``class_pixels(belief.probs).sum(0)``, at the belief's size)."""
    h, w = belief.probs.shape[2:]
    full_scale = ctx.full[0] * ctx.full[1] / (h * w)
    # a named superpixel's pixels are evidence, not known: the belief says what they are
    known = known_pixels(state.drawn_human(), state.layers, len(ctx.classes))
    return estimated_iou(quality, known, totals * full_scale)


def layer_choice(
    estimates: Estimates,
    belief: Prediction,
    state: LoopState,
    cfg: Config,
) -> list[tuple[int, int]]:
    """``layers.per_round`` layers by :func:`class_estimates` in ``layers.order``
    (``class_layers.choose_layers``): by the class's estimated IoU to win per click and how
    much the fused ``belief`` doubts the class in each frame."""
    quality, cost, full = estimates.quality, estimates.cost, estimates.full
    eligible = ~state.complete_mask(len(quality)) & ~full[:, None]
    return choose_layers(quality, cost, doubt(belief.probs), eligible, cfg.layers.per_round,
                         cfg.layers.order)  # fmt: skip


def select_layers(
    ctx: VideoContext,
    pred: Prediction,
    belief: Prediction,
    state: LoopState,
    cfg: Config,
    fcfg: FusionConfig,
) -> list[tuple[int, int]]:
    """This round's class layers (``class_layers.py``), or none while fewer than
    ``fusion.calibration_probes`` frames are labelled in full."""
    estimates = class_estimates(ctx, pred, state, cfg, fcfg)
    return [] if estimates is None else layer_choice(estimates, belief, state, cfg)


def layer_drawer(annotator: Annotator) -> Callable[..., list[Annotation]]:
    """The annotator's way to draw class layers, or a clear error when it has none."""
    ask = getattr(annotator, "annotate_layers", None)
    if ask is None:
        raise HvsaError(
            f"annotator {annotator.name!r} cannot draw class layers: layers.enabled and layers "
            "in auto.granularities need the oracle or people in a campaign (the app's layer tasks)"
        )
    return ask


def within_cap(annotations: list[Annotation], state: LoopState, cfg: Config) -> list[Annotation]:
    """The annotations in order up to ``loop.max_clicks``: later ones stay unlabelled."""
    cap = cfg.loop.max_clicks
    if cap is None:
        return annotations
    kept, total = [], state.clicks_total
    for a in annotations:
        if total + a.clicks.total > cap:
            break
        kept.append(a)
        total += a.clicks.total
    return kept


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
    video_key: str,
    round_no: int,
    epoch: int = 0,
) -> list[Event]:
    """One ledger event per annotation, keyed so that a replayed round records nothing twice.

    ``epoch`` counts the video's rollbacks: a round redone after a rollback is new work and
    gets new events, while a step replayed after a crash in the same epoch gets none.
    """
    events = []
    for a in annotations:
        (y0, y1), (x0, x1) = (a.box[0].start, a.box[0].stop), (a.box[1].start, a.box[1].stop)
        if a.layer_class is None:
            kind, segment = samples.granularity, int(samples.table.iloc[a.sample_id].segment)
            key, extra = f"{a.sample_id}", {}
        else:  # a class layer: the whole frame, one class (``class_layers.py``)
            kind, segment = "layer", a.layer_class
            key = f"layer{a.frame}-{a.layer_class}"
            extra = {"class": classes.names[a.layer_class]}
        values, counts = np.unique(a.labels[a.labels != VOID], return_counts=True)
        class_pixels = {classes.names[int(v)]: int(c) for v, c in zip(values, counts, strict=True)}
        if a.detail is not None:  # the clicks as counted at the source, tool by tool
            detail = dict(a.detail)
            clicks = {**detail.pop("clicks_by_tool", {}), **detail}
        else:
            clicks = {"regions": a.clicks.regions, "vertices": a.clicks.vertices}
            clicks["crossings"] = a.clicks.crossings
        digest = label_hash(a)
        events.append(
            Event(
                kind="annotation",
                campaign=campaign,
                video=video_key,
                round=round_no,
                sample_id=a.sample_id,
                frame=a.frame,
                frame_name=video.frame_names[a.frame],
                geometry={
                    "kind": kind,
                    "segment": segment,
                    "x0": x0,
                    "y0": y0,
                    "x1": x1,
                    "y1": y1,
                    **extra,
                },  # fmt: skip
                annotator=a.annotator,
                tool=a.tool,
                clicks=a.clicks.total,
                clicks_detail=clicks,
                class_pixels=class_pixels,
                started=a.started,
                finished=a.finished,
                label_hash=digest,
                idempotency_key=f"{campaign}/{video_key}/e{epoch}/r{round_no}/{key}/{digest}",
            )
        )
    return events


def record_annotations(
    ledger: Ledger,
    annotations: list[Annotation],
    ctx: VideoContext,
    state: LoopState,
    campaign: str,
    video_key: str,
    round_no: int,
) -> pd.DataFrame:
    """Append the annotations to the ledger, apply them to the state; returns the round's table."""
    epoch = ledger.count(kind="rollback", campaign=campaign, video=video_key)
    events = ledger_events(
        annotations, ctx.samples, ctx.video, ctx.classes, campaign, video_key, round_no, epoch
    )
    event_ids = ledger.append(events)
    state.apply(annotations, ctx.samples, event_ids)
    return annotations_table(events, event_ids, ledger.hashes(event_ids))


def record_existing(
    ledger: Ledger,
    existing: ExistingLabels,
    ctx: VideoContext,
    state: LoopState,
    campaign: str,
    video_key: str,
    cfg: AnnotationConfig,
) -> pd.DataFrame:
    """Labels a team already has, recorded and applied before round 1 (round 0's table)."""
    tolerance = cfg.polygon_tolerance
    events = existing_events(existing, ctx.video, ctx.classes, campaign, video_key, tolerance)
    event_ids = ledger.append(events)
    clicks = existing.frame_clicks(tolerance)
    state.apply_frames(existing.labels, clicks, event_ids, cfg.whole_frame)
    return annotations_table(events, event_ids, ledger.hashes(event_ids))


def annotations_table(
    events: list[Event], event_ids: list[int], hashes: list[str | None]
) -> pd.DataFrame:
    """The round's ledger events as a flat table (one row per annotation), each with its hash
    in the ledger's chain: the round's folder is versioned, so a ledger rewritten later no
    longer matches it (``hvsa audit --verify``)."""
    rows = []
    for event, event_id, chain in zip(events, event_ids, hashes, strict=True):
        row = asdict(event) | {"ledger_hash": chain}
        geometry, detail = row.pop("geometry"), row.pop("clicks_detail")
        classes = row.pop("class_pixels")
        row = {"event_id": event_id, **row, "granularity": geometry.pop("kind"), **geometry}
        row |= {f"clicks_{k}": v for k, v in detail.items()}
        row["labelled_pixels"] = sum(classes.values())
        row["class_pixels"] = json.dumps(classes)
        rows.append(row)
    return pd.DataFrame(rows)


def teaching_labels(
    ctx: VideoContext, state: LoopState, cfg: Config, current: Callable[[], Prediction]
) -> torch.Tensor:
    """(N,h,w) labels to fine-tune on: human labels, with ``finetune.pseudo_threshold`` the
    confident fused labels wherever no human spoke, and with ``finetune.keep_known`` the
    network's own sure labels where nobody spoke on frames labelled in part.

    Why: the network otherwise learns only from the few labelled frames, while the labels it
    helps write come mostly from human labels carried along the flow; learning those carried
    labels (where the fused belief is sure: near a human label, flow consistent) shows it every
    frame of the video, and it is the network that fills in where no carried label reaches.
    ``current`` gives the network's prediction before fine-tuning; it is called once, only when
    labels are added; for the pseudo-labels the guided radius is calibrated on it too (the
    round's labels, written after fine-tuning, calibrate again on the new prediction).
    """
    # uint8, not int64: an eighth of the memory (a loss takes its batch as int64)
    labels = torch.from_numpy(np.ascontiguousarray(resize_labels(state.human, ctx.work)))
    thr, keep = cfg.finetune.pseudo_threshold, cfg.finetune.keep_known
    pseudo = thr is not None and cfg.fusion.enabled
    if not (pseudo or keep is not None) or not (state.human != VOID).any():
        return labels
    labels = labels.clone()  # what is added must not reach state.human
    pred = current()  # once: without a prediction at hand, each call predicts the video
    spoken = torch.from_numpy(resize_mask(state.annotated, ctx.work))
    if pseudo:
        _add_pseudo_labels(ctx, state, cfg, pred, spoken, labels, thr)
    if keep is not None:
        _add_known_labels(state, pred, spoken, labels, keep, cfg.finetune.keep_known_ratio)
    return labels


def _add_known_labels(
    state: LoopState,
    pred: Prediction,
    spoken: torch.Tensor,
    labels: torch.Tensor,
    thr: float,
    ratio: float | None = None,
) -> None:
    """Add to ``labels`` (in place) the network's own label, on every frame a human labelled
    in part, wherever nobody spoke (``spoken``) and the network (before this round's
    fine-tuning) is at least ``thr`` sure (``finetune.keep_known``).

    Why: with labels in pieces the network decides most pixels, and a batch of pieces may hold no
    pixel of a class the network already knows (uncertainty picks what it is unsure of); 60 steps
    on them taught it to call 0016E5_15hz's sky tree (sky IoU 93 -> 8 %, labels -10 points in one
    round, benchmarks/RESULTS.md). Only frames with human labels: the others are drawn for the
    temporal term alone, as before.

    ``ratio`` (``finetune.keep_known_ratio``): add a random share of those pixels, at most
    ``ratio`` times as many as the pixels people answered, so the network's own labels do not
    outweigh the pieces in the loss (with every sure pixel added they are most of it, and what
    the pieces teach was learnt slower).
    """
    frames = np.flatnonzero((state.human != VOID).reshape(len(state.human), -1).any(1))
    guess = torch.empty((len(frames), *labels.shape[1:]), dtype=labels.dtype)
    fill = torch.empty(guess.shape, dtype=torch.bool)
    for start in range(0, len(frames), 16):  # a few frames at a time: probs may be on disk
        at = frames[start : start + 16]
        top = pred.probs[torch.from_numpy(at)].float().max(1)
        guess[start : start + 16] = top.indices
        fill[start : start + 16] = ~spoken[at] & (labels[at] == VOID) & (top.values >= thr)
    if ratio is not None:
        answered = int(spoken.sum())
        share = ratio * answered / max(int(fill.sum()), 1)
        if share < 1:
            draw = torch.Generator().manual_seed(answered)  # the same draw for the same state
            fill &= torch.rand(fill.shape, generator=draw) < share
    rows = torch.from_numpy(frames)
    part = labels[rows]
    part[fill] = guess[fill]
    labels[rows] = part


def _add_pseudo_labels(
    ctx: VideoContext,
    state: LoopState,
    cfg: Config,
    pred: Prediction,
    spoken: torch.Tensor,
    labels: torch.Tensor,
    thr: float,
) -> None:
    """Add to ``labels`` (in place) the confident fused labels wherever nobody spoke
    (``finetune.pseudo_threshold``)."""
    fcfg = fusion_settings(ctx, pred, state, cfg)
    # without class layers: a layer says nothing of its frame's other classes, so the
    # network must not learn the classes it rules out as if a human had named them
    _, belief = fuse(pred.probs, state.human, ctx.video.frames, ctx.flow, fcfg, state.annotated,
                     device=fusion_device(cfg), named=state.named,
                     regions=state.provenance)  # fmt: skip
    conf = torch.empty(labels.shape, dtype=torch.float16)
    guess = torch.empty(labels.shape, dtype=torch.uint8)
    for start in range(0, len(belief), 16):  # a few frames at a time: belief may be on disk
        top = belief[start : start + 16].max(1)
        conf[start : start + 16], guess[start : start + 16] = top.values, top.indices
    fill = ~spoken & (labels == VOID) & (conf >= thr)
    labels[fill] = guess[fill]


def finetune_model(
    model: SegmentationNet,
    ctx: VideoContext,
    state: LoopState,
    cfg: Config,
    device: torch.device,
    round_no: int,
    pred: Prediction | None = None,
) -> list[dict[str, float]]:
    """Fine-tune in place on every human label so far plus the temporal term.

    With ``finetune.pseudo_threshold`` also on confident carried labels (``teaching_labels``);
    ``pred`` is the current network's prediction if the caller has it (else it is made here,
    and only if the pseudo-labels need it).
    """

    def current() -> Prediction:
        return (
            pred
            if pred is not None
            else predict(model, ctx.frames_t, cfg.output.batch_size, device, ctx.scratch)
        )

    human_frames = np.flatnonzero((state.human != VOID).reshape(len(state.human), -1).any(1))
    labels = teaching_labels(ctx, state, cfg, current)
    data = TrainingData(ctx.frames_t, labels, ctx.flow_t, ctx.valid_t, human_frames)
    return finetune(model, data, cfg.finetune, device, seed=round_no, crop=cfg.model.train_crop)


def fusion_settings(
    ctx: VideoContext,
    pred: Prediction,
    state: LoopState,
    cfg: Config,
    unseen: dict[int, torch.Tensor] | None = None,
) -> FusionConfig:
    """This round's fusion settings: params.yaml's, with the guided radius calibrated on the
    human labels so far, and the network weight on the estimate's probes with the network's
    vote there from ``unseen`` where given (:func:`unseen_votes`; ``calibrate.py``).

    Named labels (a superpixel given its dominant class with one click) are no probes and no
    truth to score a radius against — 8-14 % of a round's fills are another class on
    0016E5_15hz — but still carry votes to the probes (at full weight, as drawn labels). A run of
    superpixels alone has nothing to probe and keeps ``guided_radius``. One run of 8 rounds
    of 400 superpixels each way (benchmarks/RESULTS.md "Which frames to probe"): on
    0016E5_15hz, scored on every frame's fills, the radius moved to 3 and one round lowered
    the labels 0.29 points (68.3 % at the end); kept at 2, no round fell more than 0.13
    (68.9 %). On a generated video whose fills are 3-5 % wrong the fills-scored run ended
    0.7 points higher (94.0 against 93.3 %), neither falling more than 0.11."""
    # the network weight (off by default) is scored on every label at the estimate's probes
    truth = None
    if state.named is not None and cfg.fusion.radius_choices:
        truth = state.drawn_human()
    return calibrated(
        cfg.fusion, pred.probs, state.human, ctx.video.frames, ctx.flow, state.annotated,
        unseen, truth,
    )  # fmt: skip


def fusion_device(cfg: Config) -> torch.device | None:
    """Where the label generator runs: the network's device (``model.device``) when it is a
    GPU; None on the host, where numpy and OpenCV with the sparse gather are fastest (the torch
    kernel took 1.6-1.7x their time on 2 CPU cores, benchmarks/results/fusion_speed.csv)."""
    device = pick_device(cfg.model.device)
    return None if device.type == "cpu" else device


def compose_labels(
    ctx: VideoContext,
    pred: Prediction,
    state: LoopState,
    cfg: Config,
    fusion_cfg: FusionConfig | None = None,
    only: np.ndarray | None = None,
    previous: tuple[np.ndarray, torch.Tensor] | None = None,
    label_vote: Prediction | None = None,
) -> tuple[np.ndarray, Prediction]:
    """Full-resolution labels, and the belief that the next selection ranks samples by.

    With ``fusion.enabled`` human labels are carried along the flow and fused with the network
    (``fusion.py``, settings from :func:`fusion_settings` unless ``fusion_cfg`` gives them), and
    the belief is the fused probabilities; otherwise the labels are the network's prediction
    with human labels winning, and the belief is the network's own. ``only`` and ``previous``:
    fuse those frames alone, the rest as ``previous`` (labels, belief) had them (``fuse``).
    ``label_vote``: the network vote the labels alone are made from (``fusion.vote_for:
    labels``); the belief stays ``pred``'s.
    """
    if cfg.fusion.enabled:
        fcfg = fusion_settings(ctx, pred, state, cfg) if fusion_cfg is None else fusion_cfg
        labels, probs = fuse(
            pred.probs, state.human, ctx.video.frames, ctx.flow, fcfg, state.annotated,
            state.layers, state.complete_mask(len(ctx.classes)), only, previous,
            fusion_device(cfg), state.named, state.provenance,
            None if label_vote is None else label_vote.probs,
        )  # fmt: skip
        return labels, Prediction(probs, pred.features)
    if state.complete:
        raise HvsaError("class layers act through the label generator: set fusion.enabled true")
    net = upsample_argmax((pred if label_vote is None else label_vote).probs, ctx.full,
                          cfg.output.batch_size)  # fmt: skip
    return compose(net, state.human), pred
