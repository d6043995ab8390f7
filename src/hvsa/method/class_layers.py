"""Class layers: a sample that is one class in one frame — all its regions, nothing else.

Why: a label carried along the flow is good for large classes and poor for thin ones (on CamVid
0016E5, a label carried one frame scores pole IoU .61, sky .94; ``benchmarks/carry_ceiling.py``),
and mIoU weighs every class alike. Once a video has a few frames labelled in full, the cheapest
mIoU left is in the thin classes of the frames nobody labelled: outlining the poles of a frame
costs about 25 clicks where the whole frame costs about 800, and it fixes that class in that
frame both ways — its pixels are known, and every other pixel of the frame is known *not* to be
it (the annotator was asked for all of them). Annotation tools offer the same task as a
"label all <class>" pass.

Which layers: each class's quality is estimated where the truth is known, on labelled frames
fused without their own labels (``calibrate.py``), and its price from the click model on the
frames labelled in full; a (frame, class) layer is worth its class's IoU to win per click times
the frame's share of the belief's doubt of that class, so a class's most doubtful frames go first
and its surer ones wait behind another class's doubtful frames.
"""

from __future__ import annotations

import numpy as np
import torch

from hvsa.data.video import VOID
from hvsa.method.clicks import layer_clicks

# a class ruled out of a pixel gives its mass to the others; this floor keeps a pixel whose
# every likely class was ruled out from defaulting to class 0
_FLOOR = 1e-6


def apply_layers(probs: np.ndarray, layer: np.ndarray, complete: np.ndarray) -> np.ndarray:
    """(C,H,W) probabilities of a frame with its class layers applied (a new array, or
    ``probs`` itself when the frame has none).

    ``layer`` (H,W) holds the class a layer gave each pixel (255 elsewhere), ``complete`` (C,)
    bool the classes whose layer the frame has: such a class is certain where its layer put it
    and impossible everywhere else.
    """
    if not complete.any():
        return probs
    out = probs.copy()
    out[complete] = 0
    out[~complete] += _FLOOR
    total = out.sum(0)
    # with a layer of every class, a pixel no layer drew is void in the truth: left as it was
    nothing = total == 0
    out /= np.where(nothing, 1, total)[None]
    out[:, nothing] = probs[:, nothing]
    given = layer != VOID
    if given.any():
        out[:, given] = 0
        flat = out.reshape(len(out), -1)  # a view: ``out`` is a fresh contiguous array
        flat[layer[given], np.flatnonzero(given)] = 1
    return out


def class_costs(
    human: np.ndarray, full: np.ndarray, num_classes: int, tolerance: float
) -> np.ndarray:
    """(C,) mean clicks of each class's layer over the frames labelled in full (``full``, bool
    per frame); NaN for a class none of them shows (its price cannot be told)."""
    frames = np.flatnonzero(full)
    cost = np.zeros(num_classes)
    seen = np.zeros(num_classes, bool)
    for f in frames:
        present = np.unique(human[f])
        seen[present[present != VOID]] = True
        for c in range(num_classes):
            cost[c] += layer_clicks(human[f], c, tolerance).total
    return np.where(seen, cost / max(len(frames), 1), np.nan)


def doubt(belief: torch.Tensor) -> np.ndarray:
    """(N,C) how much each frame's belief doubts each class: the sum of p(1 − p) over pixels."""
    out = []
    for start in range(0, len(belief), 16):  # a few frames at a time, in float32
        p = belief[start : start + 16].float()
        out.append((p * (1 - p)).sum((2, 3)).numpy())
    return np.concatenate(out) if out else np.zeros(belief.shape[:2], np.float32)


def choose_layers(
    quality: np.ndarray,
    cost: np.ndarray,
    doubts: np.ndarray,
    eligible: np.ndarray,
    count: int,
    order: str,
) -> list[tuple[int, int]]:
    """Up to ``count`` (frame, class) layers by estimated IoU to win per click.

    A class's IoU to win per click is (1 − quality) / cost (unknown quality or cost: the class
    is left out). ``order`` "class": whole classes in that order, frames within a class by
    doubt. "layer": each layer by its own share of it — the class's worth times the frame's
    share of the class's doubt over the video — so that once a class's most doubtful frames
    are given, its remaining, surer frames give way to another class's doubtful ones.
    ``eligible`` (N,C) bool rules out layers already given and frames labelled in full.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        worth = (1 - quality) / cost
    known = np.isfinite(worth) & (worth > 0)
    if order not in ("layer", "class"):
        raise ValueError(f"layers.order must be 'layer' or 'class', not {order!r}")
    if order == "layer":
        total = doubts.sum(0)
        share = np.divide(doubts, total, out=np.zeros(doubts.shape), where=total > 0)
        worthy = np.where(known, worth, 0.0)
        value = np.where(eligible & known, share * worthy, -np.inf)
        # ties (layers of no doubt above all) go to the worthier class, then the more doubted frame
        rank = np.lexsort((-doubts.ravel(), -np.broadcast_to(worthy, value.shape).ravel(),
                           -value.ravel()))  # fmt: skip
        rank = rank[: min(max(count, 0), int((value > -np.inf).sum()))]
        frames, classes = np.unravel_index(rank, value.shape)
        return [(int(f), int(c)) for f, c in zip(frames, classes, strict=True)]
    classes = np.argsort(-np.where(known, worth, -np.inf), kind="stable")
    picked: list[tuple[int, int]] = []
    for c in classes[: int(known.sum())]:
        frames = np.flatnonzero(eligible[:, c])
        frames = frames[np.argsort(-doubts[frames, c], kind="stable")]
        picked += [(int(f), int(c)) for f in frames[: count - len(picked)]]
        if len(picked) >= count:
            break
    return picked
