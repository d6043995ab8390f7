"""Fusion settings chosen per video from its own human labels (leave one labelled frame out).

Why: the guided filter's radius that snaps carried borders to the frame's edges is worth half a
point either way, and which radius is best depends on the video: at 15 Hz, where a label is
carried one or two frames, a 1 px radius keeps thin poles that a wider one smooths away; at
1 Hz, where a label is carried a second and lands a few pixels off, a wider radius wins
(``benchmarks/results/*/carry_ceiling*.csv``). No fixed value suits both, and a real video has
no ground truth to tune on. But every labelled frame is ground truth for the others: hide it,
fuse it from the labels that remain, and score each radius against what the human said. The
frame's own carried votes do not depend on the radius, so trying several costs one guided
filter each.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hvsa.config import FusionConfig
from hvsa.data.scaling import resize_labels
from hvsa.data.video import VOID
from hvsa.method.estimate import EDGES, reliability_counts
from hvsa.method.fusion import carried_votes, fuse_frame
from hvsa.method.metrics import confusion, iou_per_class
from hvsa.method.motion import Flow


def labelled_frames(human: np.ndarray) -> np.ndarray:
    """Indices of the frames holding at least one human label."""
    return np.flatnonzero((human != VOID).reshape(len(human), -1).any(1))


def probe_frames(human: np.ndarray, count: int) -> np.ndarray:
    """``count`` labelled frames, spread evenly over the labelled ones in time order.

    Empty while fewer than ``count`` frames hold labels: with a handful of labelled frames,
    hiding one leaves its neighbours far farther away than an unlabelled frame's, and the
    score (measured: 4 labelled frames of CamVid 0016E5) then prefers a radius that loses on
    the frames it is for.
    """
    labelled = labelled_frames(human)
    if count < 1 or len(labelled) < count:
        return np.array([], np.intp)
    return labelled[np.linspace(0, len(labelled) - 1, count).round().astype(np.intp)]


def radius_probes(human: np.ndarray, least: int, most: int | None) -> np.ndarray:
    """The frames the radius calibration hides in turn: every labelled frame once ``least``
    hold labels (at most ``most`` of them, spread evenly by :func:`probe_frames`); empty before.

    Why every one: the radii's scores differ by tenths of a point, and eight probes spread over
    the labelled frames are a new eight whenever two frames are labelled, so the choice swung
    with the probes: on 0006R0 (rounds 8-33 of one run, ``results/0006R0/target/
    radius_probe_sets.csv``) eight probes changed the radius 14 times and picked one 0.09 points
    below the video's best on average (0.60 in round 33, the switch that lowered its labels
    0.31 points); every labelled frame changed it twice and picked within 0.06 of the best in
    every round (0.007 on average); 32 spread probes (all while fewer are labelled) changed it
    9 times (0.027 below). The cost grows with the labelled frames: about 0.13 s a probe there
    (2 CPU cores, 360x480).
    """
    labelled = labelled_frames(human)
    if least < 1 or len(labelled) < least:
        return np.array([], np.intp)
    if most is not None and len(labelled) > most:
        return probe_frames(human, most)
    return labelled


# the settings that shape the carried votes; the others only act when votes are fused
VOTE_FIELDS = ("window", "sigma", "distance_power", "photo_sigma", "min_remaining")


def hidden_votes(
    human: np.ndarray,
    frames: np.ndarray,
    flow: Flow,
    cfgs: list[FusionConfig],
    spoken: np.ndarray | None,
    probes: np.ndarray,
    num_classes: int,
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """(probe index, each setting's (C,H,W) carried votes) of each probe with its own labels
    hidden; carried once per distinct :data:`VOTE_FIELDS`, the costly part of a fusion."""
    keys = [tuple(getattr(c, f) for f in VOTE_FIELDS) for c in cfgs]
    for k, p in enumerate(probes):
        hidden = human.copy()
        hidden[p] = VOID
        quiet = None
        if spoken is not None:
            quiet = spoken.copy()
            quiet[p] = False
        labelled = (hidden != VOID).reshape(len(hidden), -1).any(1)
        votes: dict[tuple, np.ndarray] = {}
        for c, key in zip(cfgs, keys, strict=True):
            if key not in votes:
                votes[key] = carried_votes(
                    hidden, labelled, flow, int(p), num_classes, c, frames, quiet
                )
        yield k, [votes[key] for key in keys]


def hidden_fusions(
    net_probs: torch.Tensor,
    human: np.ndarray,
    frames: np.ndarray,
    flow: Flow,
    cfgs: list[FusionConfig],
    spoken: np.ndarray | None,
    probes: np.ndarray,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(probe index, setting index, (C,H,W) fused probabilities) of each probe fused without
    its own labels under each setting of ``cfgs``.

    Votes are carried once per probe and distinct :data:`VOTE_FIELDS`, so settings that differ
    only in how the votes are fused (radius, ε, network weight) cost one fusion each. The
    network's vote at a probe comes from a network fine-tuned on that probe's labels, so a
    score flatters settings that lean on the network: compare guided radii with it, network
    weights with :func:`weight_scores`.
    """
    nothing = np.full(human.shape[1:], VOID, np.uint8)
    carried = hidden_votes(human, frames, flow, cfgs, spoken, probes, net_probs.shape[1])
    for k, votes in carried:
        p = probes[k]
        for i, (c, v) in enumerate(zip(cfgs, votes, strict=True)):
            yield k, i, fuse_frame(net_probs[p], v, frames[p], nothing, c)


def leave_one_out_confusions(
    net_probs: torch.Tensor,
    human: np.ndarray,
    frames: np.ndarray,
    flow: Flow,
    cfgs: list[FusionConfig],
    spoken: np.ndarray | None,
    probes: np.ndarray,
    by_probe: bool = False,
    truth: np.ndarray | None = None,
) -> np.ndarray:
    """(S,C,C) confusion of each fusion setting on the ``probes``' human labels (``truth``
    where given), each probe fused without its own (rows: the human's class); (S,P,C,C), one
    per probe, with ``by_probe``. Pooled over the probes, so a class seen on one probe counts
    as much as on all (:func:`hidden_fusions`)."""
    num_classes = net_probs.shape[1]
    truth = human if truth is None else truth
    cms = np.zeros((len(cfgs), len(probes), num_classes, num_classes), np.int64)
    fusions = hidden_fusions(net_probs, human, frames, flow, cfgs, spoken, probes)
    for k, i, fused in fusions:
        cms[i, k] = confusion(truth[probes[k]], fused.argmax(0).astype(np.uint8), num_classes)
    return cms if by_probe else cms.sum(1)


def leave_one_out_probes(
    net_probs: torch.Tensor,
    human: np.ndarray,
    frames: np.ndarray,
    flow: Flow,
    cfg: FusionConfig,
    spoken: np.ndarray | None,
    probes: np.ndarray,
    unseen: Mapping[int, torch.Tensor] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each probe's (P,C,C) confusion under ``cfg`` (as :func:`leave_one_out_confusions`) and
    its (P,C,B,C) reliability counts (``hvsa.method.estimate``) twice: the fused probabilities
    taken to the network's size as a round's belief is, against the human's labels at that
    size, with the network's vote at the probe from ``unseen`` (frame → (C,h,w): as if it had
    not been fine-tuned on it, ``predict.predict_mirrored``) where given, and with its own.
    The confusions keep the network's own vote (what ``auto`` prices class layers by, as
    measured)."""
    num_classes, size = net_probs.shape[1], tuple(net_probs.shape[2:])
    cms = np.zeros((len(probes), num_classes, num_classes), np.int64)
    counts = np.zeros((2, len(probes), num_classes, len(EDGES) - 1, num_classes))
    small_human = resize_labels(human[probes], size)
    nothing = np.full(human.shape[1:], VOID, np.uint8)

    def count(fused: np.ndarray, k: int) -> np.ndarray:
        small = F.interpolate(torch.from_numpy(fused)[None], size=size, mode="area")[0]
        return reliability_counts(small.numpy(), small_human[k], num_classes)

    for k, (votes,) in hidden_votes(human, frames, flow, [cfg], spoken, probes, num_classes):
        p = int(probes[k])
        fused = fuse_frame(net_probs[p], votes, frames[p], nothing, cfg)
        cms[k] = confusion(human[p], fused.argmax(0).astype(np.uint8), num_classes)
        counts[1, k] = count(fused, k)
        if unseen is not None and p in unseen:
            counts[0, k] = count(fuse_frame(unseen[p], votes, frames[p], nothing, cfg), k)
        else:
            counts[0, k] = counts[1, k]
    return cms, counts[0], counts[1]


def class_quality(cm: np.ndarray) -> np.ndarray:
    """(C,) IoU per class of a (C,C) confusion; NaN for a class its truth never shows."""
    truth_pixels = cm.sum(1)
    out = iou_per_class(cm, truth_pixels).astype(float)
    out[truth_pixels == 0] = np.nan
    return out


def pooled_miou(cm: np.ndarray) -> float:
    """mIoU of a (C,C) confusion over the classes its truth shows; NaN where it shows none."""
    truth_pixels = cm.sum(1)
    return float(np.nanmean(iou_per_class(cm, truth_pixels))) if truth_pixels.sum() else np.nan


def leave_one_out_scores(*args: Any) -> np.ndarray:
    """mIoU of each fusion setting by :func:`leave_one_out_confusions` (same arguments); NaN
    where the probes hold no labelled pixel."""
    return np.array([pooled_miou(cm) for cm in leave_one_out_confusions(*args)])


def radius_scores(
    net_probs: torch.Tensor,
    human: np.ndarray,
    frames: np.ndarray,
    flow: Flow,
    cfg: FusionConfig,
    spoken: np.ndarray | None,
    radii: list[int],
    probes: np.ndarray,
    truth: np.ndarray | None = None,
) -> np.ndarray:
    """:func:`leave_one_out_scores` of ``cfg`` with each guided radius in ``radii``, scored
    against ``truth`` where given (as :func:`calibrated`)."""
    cfgs = [cfg.model_copy(update={"guided_radius": r}) for r in radii]
    return leave_one_out_scores(net_probs, human, frames, flow, cfgs, spoken, probes, False, truth)


def weight_scores(
    net_probs: torch.Tensor,
    human: np.ndarray,
    frames: np.ndarray,
    flow: Flow,
    cfg: FusionConfig,
    spoken: np.ndarray | None,
    weights: list[float],
    unseen: Mapping[int, torch.Tensor],
) -> np.ndarray:
    """(2,W) mIoU of ``cfg`` with each network weight in ``weights`` at the frames of
    ``unseen``, each fused without its own labels: row 0 with the network's vote there from
    ``unseen`` (as if it had not seen the probe), row 1 with its own (it was fine-tuned on the
    probe). The votes are carried once per probe; NaN where the probes hold no label."""
    probes = np.array(sorted(unseen), np.intp)
    n = net_probs.shape[1]
    cms = np.zeros((2, len(weights), n, n), np.int64)
    cfgs = [cfg.model_copy(update={"network_weight": w}) for w in weights]
    nothing = np.full(human.shape[1:], VOID, np.uint8)
    for k, (votes,) in hidden_votes(human, frames, flow, [cfg], spoken, probes, n):
        p = int(probes[k])
        for j, net in enumerate((unseen[p], net_probs[p])):
            for i, c in enumerate(cfgs):
                fused = fuse_frame(net, votes, frames[p], nothing, c)
                cms[j, i] += confusion(human[p], fused.argmax(0).astype(np.uint8), n)
    return np.array([[pooled_miou(cm) for cm in row] for row in cms])


def confident_choice(
    cms: np.ndarray, values: list, configured: Any, level: float | None, resamples: int = 200
) -> Any:
    """The value whose pooled leave-one-out mIoU is best, if it beats ``configured`` in at
    least ``level`` of the probes resampled with replacement; else ``configured``. With
    ``level`` None, the best pooled score alone decides (a tie keeps ``configured``).

    ``cms``: (S,P,C,C) each setting's confusion at each probe
    (:func:`leave_one_out_confusions` with ``by_probe``); ``configured`` must be among
    ``values``; a resample where the two tie counts against the change. Why: a choice made on
    8 probes swings when a round's new labels move the probes; on 0006R0 round 33's probes
    preferred radius 0 by 0.6 points where round 32's, and the whole video, preferred 2, and
    the switch cost the video's labels 0.60 points (87.63 → 87.03 %; benchmarks/RESULTS.md,
    0006R0 as the target).
    """
    scores = np.array([pooled_miou(cm.sum(0)) for cm in cms])
    if np.isnan(scores).all():
        return configured
    best = _preferred(values, scores, configured)
    if best == configured or level is None:
        return best
    b, c = values.index(best), values.index(configured)
    rng = np.random.default_rng(0)
    probes = cms.shape[1]
    wins = 0
    for _ in range(resamples):
        pick = rng.integers(0, probes, probes)
        wins += pooled_miou(cms[b, pick].sum(0)) > pooled_miou(cms[c, pick].sum(0))
    return best if wins >= level * resamples else configured


def _preferred(values: list, scores: np.ndarray, configured: Any) -> Any:
    """The value of the best score; a tie keeps ``configured``, then the first (smallest)."""
    best = np.nanmax(scores)
    winners = [v for v, s in zip(values, scores, strict=True) if s >= best - 1e-12]
    return configured if configured in winners else winners[0]


def calibrated(
    cfg: FusionConfig,
    net_probs: torch.Tensor,
    human: np.ndarray,
    frames: np.ndarray,
    flow: Flow,
    spoken: np.ndarray | None = None,
    unseen: Mapping[int, torch.Tensor] | None = None,
    truth: np.ndarray | None = None,
) -> FusionConfig:
    """``cfg`` with the guided radius its leave-one-out score prefers, then the network weight.

    The radius: scored on every frame holding ``truth`` (:func:`radius_probes`), each probe
    fused from all of ``human`` but its own frame and scored against its ``truth``;
    ``truth`` defaults to ``human`` and is smaller where some labels are no truth to score
    against (superpixel fills, ``steps.fusion_settings``), which still carry votes, at full
    weight. Unchanged when fusion or calibration is off (``cfg.radius_choices``
    empty) or there is nothing to probe yet; a tie keeps the configured radius, then the
    smaller one; with ``cfg.radius_confidence`` another radius only where it wins with that
    confidence (:func:`confident_choice`).

    The network weight (``cfg.network_weight_choices``): scored at the frames of ``unseen``
    (the round's estimate probes, labelled in full) once there are ``calibration_probes`` of
    them, by the mean of two readings (:func:`weight_scores`; ``cfg.network_weight_reading``
    takes one alone): the network's vote there as if it had not been fine-tuned on them (its
    mirror image, ``steps.unseen_votes``), which reads it low (the mirror loses the video's
    left-right layout), and its own vote, which reads it high. Why: how good the network is
    beside the carried labels differs by video and by round: on 0006R0 (1 Hz) the best weight
    for the frames nobody labelled rose from 0.005 to 0.1 as the network learnt the video,
    worth up to 1.9 points there. Off by default: on 0006R0 the pick changed from round to
    round and a change lowered the labels (benchmarks/RESULTS.md "The network's weight from
    the probes").
    """
    if not cfg.enabled:
        return cfg
    truth = human if truth is None else truth
    probes = (radius_probes(truth, cfg.calibration_probes, cfg.calibration_probe_limit)
              if cfg.radius_choices else [])  # fmt: skip
    if len(probes):
        radii = sorted(set(cfg.radius_choices) | {cfg.guided_radius})
        cfgs = [cfg.model_copy(update={"guided_radius": r}) for r in radii]
        cms = leave_one_out_confusions(
            net_probs, human, frames, flow, cfgs, spoken, probes, by_probe=True, truth=truth
        )
        radius = confident_choice(cms, radii, cfg.guided_radius, cfg.radius_confidence)
        cfg = cfg.model_copy(update={"guided_radius": radius})
    if cfg.network_weight_choices and unseen and len(unseen) >= cfg.calibration_probes:
        weights = sorted(set(cfg.network_weight_choices) | {cfg.network_weight})
        readings = weight_scores(net_probs, human, frames, flow, cfg, spoken, weights, unseen)
        scores = {"mean": readings.mean(0), "unseen": readings[0], "own": readings[1]}[
            cfg.network_weight_reading
        ]
        if not np.isnan(scores).all():
            weight = _preferred(weights, scores, cfg.network_weight)
            cfg = cfg.model_copy(update={"network_weight": weight})
    return cfg
