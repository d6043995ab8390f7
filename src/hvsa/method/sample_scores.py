"""Per-sample scores for selection: mean uncertainty and pooled network features.

Both are computed at the network's working size, over the sample regions downsampled to it;
a sample too small to own a pixel there takes the value at its centroid instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from hvsa.method.uncertainty import per_segment_mean


def _centroid_index(
    table: pd.DataFrame, full: tuple[int, int], work: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    ys = np.clip((table["cy"].to_numpy() * work[0] / full[0]).astype(int), 0, work[0] - 1)
    xs = np.clip((table["cx"].to_numpy() * work[1] / full[1]).astype(int), 0, work[1] - 1)
    return ys, xs


def sample_uncertainty(
    pixel_unc: np.ndarray, small_segments: np.ndarray, table: pd.DataFrame, full: tuple[int, int]
) -> np.ndarray:
    """Mean uncertainty per sample (table order) from (N,h,w) pixel scores."""
    work = pixel_unc.shape[1:]
    out = np.empty(len(table))
    for f, rows in table.groupby("frame").indices.items():
        out[rows] = per_segment_mean(pixel_unc[f], small_segments[f], len(rows))
    missing = np.isnan(out)
    if missing.any():
        ys, xs = _centroid_index(table, full, work)
        frames = table["frame"].to_numpy()
        # a frame at a time: ``pixel_unc`` may be read from disk (data.spill.map_frames)
        out[missing] = [pixel_unc[f][y, x] for f, y, x in
                        zip(frames[missing], ys[missing], xs[missing], strict=True)]  # fmt: skip
    return out


def sample_features(
    features: torch.Tensor, small_segments: np.ndarray, table: pd.DataFrame, full: tuple[int, int]
) -> np.ndarray:
    """Mean feature vector per sample, L2-normalised so k-means compares directions."""
    work = small_segments.shape[1:]
    dim = features.shape[1]
    out = np.zeros((len(table), dim), np.float32)
    ys, xs = _centroid_index(table, full, work)
    for f, rows in table.groupby("frame").indices.items():
        up = F.interpolate(
            features[f : f + 1].float(), size=work, mode="bilinear", align_corners=False
        )
        flat = up[0].flatten(1).T  # (h*w, F)
        seg = torch.from_numpy(small_segments[f].ravel().astype(np.int64))
        sums = torch.zeros(len(rows), dim).index_add_(0, seg, flat)
        counts = torch.bincount(seg, minlength=len(rows)).float()
        pooled = sums / counts.clamp_min(1)[:, None]
        empty = (counts == 0).numpy()
        if empty.any():
            pooled[empty] = up[0][:, ys[rows][empty], xs[rows][empty]].T
        out[rows] = pooled.numpy()
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-8)
