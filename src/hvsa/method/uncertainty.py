"""How unsure the network is, per pixel and per sample.

All three measures grow with uncertainty so that "most uncertain" is always "largest".
Entropy is normalised by log(C) so that scores of networks with different class counts compare.
"""

from __future__ import annotations

import numpy as np
import torch

from hvsa.data.spill import map_frames


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Normalised Shannon entropy over the class axis 1: (N,C,h,w) → (N,h,w) in [0, 1]."""
    # entr(p) = −p·log p (0 at p = 0) in one pass: 4–5× faster than clamp, log, multiply
    return torch.special.entr(probs).sum(1) / float(np.log(probs.shape[1]))


def margin(probs: torch.Tensor) -> torch.Tensor:
    """1 − (p₁ − p₂): one minus the gap between the two most likely classes."""
    top2 = probs.topk(2, dim=1).values
    return 1 - (top2[:, 0] - top2[:, 1])


def least_confidence(probs: torch.Tensor) -> torch.Tensor:
    """1 − p₁: one minus the probability of the predicted class."""
    return 1 - probs.max(1).values


MEASURES = {"entropy": entropy, "margin": margin, "least_confidence": least_confidence}


def pixel_uncertainty(probs: torch.Tensor, measure: str, chunk: int = 16) -> np.ndarray:
    """(N,C,h,w) probabilities → (N,h,w) float32 uncertainty by the named measure, ``chunk``
    frames at a time (a measure's intermediates are as large as the probabilities); on disk
    when the probabilities are (``map_frames``)."""
    score = MEASURES[measure]
    return map_frames(probs, lambda part: score(part.float()).numpy(), tuple(probs.shape[2:]),
                      np.float32, chunk)  # fmt: skip


def per_segment_mean(values: np.ndarray, segments: np.ndarray, n: int) -> np.ndarray:
    """Mean of ``values`` (h,w) over each region id 0..n-1 of ``segments`` (h,w).

    Regions with no pixel at this resolution get NaN; the caller decides how to fill them.
    """
    sums = np.bincount(segments.ravel(), values.ravel(), minlength=n)
    counts = np.bincount(segments.ravel(), minlength=n).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)
