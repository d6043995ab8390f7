"""Expected mIoU gain per click: what a sample is worth, for its price.

mIoU weighs every class alike, so a wrong pole pixel costs the score far more than a wrong road
pixel: class c's IoU moves by about 1/|c's union| per pixel. A pixel's expected gain from a human
label is therefore its chance of being wrong (1 − the belief's top probability) times the IoU
weight of the two classes it is torn between. A sample's price is what the click model would
charge for the labels the belief expects there (1 click for a superpixel), so a thin pole in a
small rectangle, cheap and heavy, comes before a large uncertain stretch of road. This is the
``gain`` selector (``auto`` compares granularities against labelled truth instead, ``auto.py``).
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import torch

from hvsa.data.spill import map_frames
from hvsa.method.clicks import region_clicks


def pixel_gain(probs: torch.Tensor) -> np.ndarray:
    """(N,C,h,w) belief → (N,h,w) expected mIoU gain of a human label at each pixel.

    ``(1 − p₁) · (1/U₁ + 1/U₂) / C``, where classes 1 and 2 are the pixel's two likeliest and U
    is a class's expected number of pixels in the video (its soft union).
    """
    num, step = probs.shape[1], 16  # a few frames at a time, in float32
    union = sum(probs[i : i + step].float().sum((0, 2, 3)) for i in range(0, len(probs), step))
    inverse = 1.0 / torch.as_tensor(union).clamp_min(1.0)

    def gain(part: torch.Tensor) -> np.ndarray:
        top2 = part.float().topk(2, dim=1)
        weight = inverse[top2.indices].sum(1)
        return ((1 - top2.values[:, 0]) * weight / num).numpy()

    return map_frames(probs, gain, tuple(probs.shape[2:]), np.float32, step)


def sample_gain(
    gain: np.ndarray, small_segments: np.ndarray, table: pd.DataFrame, rows: np.ndarray
) -> np.ndarray:
    """Summed gain of the samples ``rows`` (table positions), at the working size."""
    out = np.zeros(len(rows))
    frames = table["frame"].to_numpy()[rows]
    segments = table["segment"].to_numpy()[rows]
    for f in np.unique(frames):
        sums = np.bincount(small_segments[f].ravel(), gain[f].ravel())
        here = frames == f
        seg = segments[here]
        out[here] = np.where(seg < len(sums), sums[np.minimum(seg, len(sums) - 1)], 0.0)
    return out


def expected_clicks(
    predicted: np.ndarray,
    table: pd.DataFrame,
    rows: np.ndarray,
    full: tuple[int, int],
    granularity: str,
    tolerance: float,
) -> np.ndarray:
    """The click model applied to the belief's labels (N,h,w) in each sample's box.

    Superpixels cost 1. For frames and rectangles the working-size labels of the box are scaled
    to the box's full size first, so that vertices and crossings are counted as a human would
    meet them.
    """
    if granularity == "superpixel":
        return np.ones(len(rows))
    h, w = predicted.shape[1:]
    sy, sx = h / full[0], w / full[1]
    out = np.empty(len(rows))
    for i, r in enumerate(table.iloc[rows].itertuples()):
        y0, y1 = int(r.y0 * sy), max(int(r.y0 * sy) + 1, int(round(r.y1 * sy)))
        x0, x1 = int(r.x0 * sx), max(int(r.x0 * sx) + 1, int(round(r.x1 * sx)))
        patch = predicted[r.frame, y0:y1, x0:x1]
        patch = cv2.resize(patch, (r.x1 - r.x0, r.y1 - r.y0), interpolation=cv2.INTER_NEAREST)
        out[i] = max(1, region_clicks(patch, tolerance).total)
    return out


def select_gain(gain: np.ndarray, cost_of, budget: int, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``budget`` candidates of best gain per click, and their expected clicks.

    Prices are computed for the ``pool × budget`` candidates of highest gain only: the click
    model is too slow to run on every rectangle of a video each round, and a sample of little
    gain never wins on price alone. ``cost_of(indices)`` returns their expected clicks.
    """
    top = np.argsort(-gain, kind="stable")[: max(budget, pool * budget)]
    cost = cost_of(top)
    order = np.argsort(-(gain[top] / cost), kind="stable")[:budget]
    return top[order], cost[order]
