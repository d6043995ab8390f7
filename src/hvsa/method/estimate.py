"""The labels' mIoU without ground truth: the fused belief's agreement, calibrated on labelled
frames fused without their own labels.

Why not the probes' own IoU: a labelled frame hidden from the fusion lies about twice as far
from the nearest label as an unlabelled frame does on average (its neighbours are labels one
spacing away on each side; an unlabelled frame sits between two), so its carried labels are
worse than the video's: applied to the whole video, the probes' IoU per class erred low by 4 to
9 points on 0016E5_15hz and by 12 to 17 on 0001TP (``benchmarks/results/estimate_interval.csv``).

What transfers from the probes to the rest of the video is how often a pixel is right *given
what the belief says there*: its most likely class ``k`` and how clearly that class beats the
runner-up (``agreement = p1 / (p1 + p2)``, high where the carried votes agree, low where two
classes compete). The raw confidence ``p1`` does not transfer: far from a label the votes are
weak and the uniform prior caps ``p1`` even where they all agree, so at a probe a pixel of middle
confidence is mostly right while at an unlabelled frame it is a contested one. Agreement
separates the two.

So: count, on the probes (each fused without its own labels, the network's vote there taken
from the probe's mirror image: the network was fine-tuned on the probe, not on the frames it
stands in for, ``hvsa.method.predict.predict_mirrored``), how often the human's class is
``c`` where the belief said ``k`` at agreement bin ``b`` (:func:`reliability_counts`); turn the
counts into ``P(c | k, b)`` (:func:`reliability`); and spread every pixel nobody labelled over
the classes it truly is in expectation (:func:`expected_confusion`): the expected confusion
matrix of the video gives each class's expected IoU, and their mean the estimated mIoU. Bins the
probes never reach (the most certain ones: no probe is as near a label as the frames beside a
label are) take the nearest bin below of the same class, the best evidence at hand, so the
estimate does not fall back on what uncertain pixels do. That is an assumption, so the
interval (:func:`interval`) spans the pessimistic one too (such bins at the class's average
over all bins) beside the spread over which frames were probes.

Pure functions over arrays; the rounds (``hvsa.rounds``) gather the probes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from hvsa.data.video import VOID
from hvsa.method.metrics import iou_per_class, mean_iou

# agreement bins (p1 / (p1 + p2) ranges from 0.5 to 1): finer near 1, where most pixels are
EDGES = np.array([0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999, 1.0001])
# pseudo-pixels pulling a bin's class shares toward the bin below: a bin of a few hundred probe
# pixels speaks mostly for itself, one of a handful barely
SMOOTHING = 20.0


def agreement_bins(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The most likely class and its agreement bin of every pixel of (C,...) probabilities."""
    top = np.partition(probs, -2, axis=0)[-2:]
    ratio = top[1] / np.maximum(top[0] + top[1], 1e-12)
    return probs.argmax(0), np.clip(np.digitize(ratio, EDGES) - 1, 0, len(EDGES) - 2)


def reliability_counts(probs: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """(C,B,C) pixels of each (predicted class, agreement bin, true class) in one frame: the
    fused probabilities (C,h,w) of a labelled frame fused without its labels, and its labels
    (h,w; :data:`VOID` not counted)."""
    k, b = agreement_bins(probs)
    ok = truth != VOID
    counts = np.zeros((num_classes, len(EDGES) - 1, num_classes))
    np.add.at(counts, (k[ok], b[ok], truth[ok].astype(np.intp)), 1)
    return counts


def reliability(counts: np.ndarray, below: bool = True) -> np.ndarray:
    """(C,B,C) ``P(true c | predicted k, bin b)`` from pooled :func:`reliability_counts`.

    Each bin is smoothed toward the bin below it of the same predicted class (the lowest bin
    toward the class's shares over all bins), so a bin the probes never reached takes the
    nearest evidence below it: agreement rarely makes a pixel less likely right. With
    ``below`` false every bin is smoothed toward the class's shares over all bins instead,
    which a bin the probes never reached then takes: the pessimistic reading, which
    :func:`interval` spans too. A class the belief never gave on the probes is right as often
    as the probes' pixels are overall, its errors spread evenly over the other classes (no
    evidence either way: neither at its word nor never)."""
    num_classes, bins, _ = counts.shape
    by_class = counts.sum(1)
    total = by_class.sum()
    right = np.trace(by_class) / total if total else 1.0
    typical = np.full((num_classes, num_classes), (1 - right) / max(num_classes - 1, 1))
    np.fill_diagonal(typical, right)
    seen = by_class.sum(1, keepdims=True) > 0
    pooled = np.where(seen, by_class / np.maximum(by_class.sum(1, keepdims=True), 1), typical)
    out = np.zeros_like(counts, dtype=float)
    for b in range(bins):
        prior = out[:, b - 1] if below and b > 0 else pooled
        out[:, b] = (counts[:, b] + SMOOTHING * prior) / (
            counts[:, b].sum(1, keepdims=True) + SMOOTHING
        )
    return out


@dataclass
class VideoSummary:
    """What the estimate needs of the video, counted once per round (a resample of the probes
    then costs no pass over the frames): the pixels people labelled per class, and the free
    pixels per (predicted class, bin) grouped by the classes their frame's layers complete."""

    known: np.ndarray  # (C,) pixels whose class a person gave (frames, rectangles, layers)
    frame_free: np.ndarray  # (N,C,B) free pixels of each frame
    frame_known: np.ndarray  # (N,) labelled pixels of each frame
    frame_done: list[tuple[int, ...]]  # each frame's completed classes
    frame_sure: np.ndarray  # (N,) the belief's own confidence summed over free pixels
    # completed classes → (C,B) free pixels of the frames that complete them: what a resample
    # sums over (a handful of groups, not every frame)
    free: dict[tuple[int, ...], np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        self.free = {}
        for done, hist in zip(self.frame_done, self.frame_free, strict=True):
            self.free[done] = self.free.get(done, 0) + hist


def summarise(
    belief: torch.Tensor, known: np.ndarray, complete: np.ndarray | None = None
) -> VideoSummary:
    """:class:`VideoSummary` of the fused ``belief`` (N,C,h,w) with ``known`` (N,h,w) the class
    a person gave each pixel (frames, rectangles or layers; :data:`VOID` none) at the belief's
    size, and ``complete`` (N,C) bool the classes a layer completes in each frame."""
    n, num_classes = belief.shape[:2]
    bins = len(EDGES) - 1
    frame_free = np.zeros((n, num_classes, bins))
    frame_known = np.zeros(n)
    given = np.zeros(num_classes)
    done_by_frame: list[tuple[int, ...]] = []
    sure = np.zeros(n)
    for f in range(n):
        probs = belief[f].float().numpy()
        k, b = agreement_bins(probs)
        mine = known[f] != VOID
        given += np.bincount(known[f][mine], minlength=num_classes)[:num_classes]
        frame_known[f] = mine.sum()
        hist = np.zeros((num_classes, bins))
        np.add.at(hist, (k[~mine], b[~mine]), 1)
        frame_free[f] = hist
        sure[f] = probs.max(0)[~mine].sum()
        done = () if complete is None else tuple(np.flatnonzero(complete[f]).tolist())
        done_by_frame.append(done)
    return VideoSummary(given, frame_free, frame_known, done_by_frame, sure)


def _without(post: np.ndarray, done: tuple[int, ...]) -> np.ndarray:
    # a pixel outside a completed class's layer is not that class (the layer holds all of it)
    if not done:
        return post
    out = post.copy()
    out[..., list(done)] = 0
    total = out.sum(-1, keepdims=True)
    return np.where(total > 0, out / np.maximum(total, 1e-12), post)


def expected_confusion(summary: VideoSummary, post: np.ndarray) -> np.ndarray:
    """(C,C) expected confusion of the video (rows: true class, columns: the labels'): people's
    pixels right, every other pixel spread by ``post`` (:func:`reliability`)."""
    cm = np.diag(summary.known).astype(float)
    for done, hist in summary.free.items():
        # hist (k,b) pixels × P(c | k,b) → column k gets the expected true classes
        cm += np.einsum("kb,kbc->ck", hist, _without(post, done))
    return cm


def estimate(summary: VideoSummary, probe_counts: np.ndarray, below: bool = True) -> np.ndarray:
    """(C,) each class's estimated IoU over the video from the probes' (P,C,B,C) counts
    (``below``: how bins without probe pixels are filled, :func:`reliability`)."""
    return iou_per_class(expected_confusion(summary, reliability(probe_counts.sum(0), below)))


def interval(
    summary: VideoSummary,
    probe_counts: np.ndarray,
    level: float,
    draws: int = 200,
    seed: int = 0,
    high_counts: np.ndarray | None = None,
    low_below: bool = False,
) -> tuple[float, float]:
    """(low, high) of the estimated mIoU at ``level``.

    Three things are unsure: which labelled frames happened to be probes (another draw would
    have calibrated the belief otherwise: resampled, ``draws`` times with replacement, fixed
    ``seed``); what the belief's most certain pixels do, which no probe reaches (no probe is
    as near a label as the frames beside a label are); and how good the network is on frames
    it has not seen. The low end takes the pessimistic reading of the second (bins without
    probe pixels at their class's average, :func:`reliability`) and of the third
    (``probe_counts``, the network's vote at a probe from its mirror image, which also loses
    what the network knows of the video's left-right layout); the high end the estimate's own
    reading of the second (as the bin below) and the optimistic one of the third
    (``high_counts``, the network's own vote at the probes it was fine-tuned on; default
    ``probe_counts``). Measured (``benchmarks/estimate_probe.py``): so spanned, the interval held
    the truth in every round of three CamVid clips, at 1 and 15 Hz, where the network's own
    vote's interval alone missed it in 4 of 5 rounds of one (its low end above the truth).
    ``low_below``: the low end reads the unreached bins as the estimate does (the bin below) —
    what the probe script compares; over the truth in 3 of 9 rounds at 15 Hz, so rounds do not."""
    high_counts = probe_counts if high_counts is None else high_counts
    rng = np.random.default_rng(seed)
    lows, highs = [], []
    for _ in range(draws):
        pick = rng.integers(0, len(probe_counts), len(probe_counts))
        lows.append(mean_iou(estimate(summary, probe_counts[pick], below=low_below)))
        highs.append(mean_iou(estimate(summary, high_counts[pick])))
    lows, highs = np.asarray(lows), np.asarray(highs)
    lows, highs = lows[np.isfinite(lows)], highs[np.isfinite(highs)]
    if not lows.size or not highs.size:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    return float(np.percentile(lows, tail)), float(np.percentile(highs, 100 - tail))


def frame_accuracy(summary: VideoSummary, post: np.ndarray | None) -> np.ndarray:
    """(N,) each frame's expected share of pixels labelled right: people's pixels right, the
    rest right at ``P(k | k, b)`` of ``post`` (:func:`reliability`) or, without probes yet,
    at the belief's own confidence (soft carried votes: it errs low)."""
    out = np.full(len(summary.frame_free), np.nan)
    for f, hist in enumerate(summary.frame_free):
        total = summary.frame_known[f] + hist.sum()
        if not total:
            continue
        if post is None:
            right = summary.frame_sure[f]
        else:
            rate = np.diagonal(_without(post, summary.frame_done[f]), axis1=0, axis2=2).T
            right = (hist * rate).sum()
        out[f] = (summary.frame_known[f] + right) / total
    return out
