"""Carrying labels along the optical flow: the `propagate-K` baseline and a label source.

A frame between two labelled keyframes takes, per pixel, the label of the earlier or the later
keyframe, followed back along the chained flow; of the two, the one whose chain broke the
forward–backward consistency least wins (occlusions and flow errors accumulate along a chain).
This is the both-way propagation measured in ``../shared/FINDINGS.md``.
"""

from __future__ import annotations

import cv2
import numpy as np

from hvsa.data.video import VOID
from hvsa.method.motion import Flow


def _sample(field: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear sample of an (H,W,2) field at float coordinates (borders replicated)."""
    return cv2.remap(field, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def step(
    flow: Flow, t: int, forward: bool, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move points (x, y) of frame ``t`` one frame on (t+1 if ``forward`` else t-1).

    Returns the new coordinates and the step's forward–backward residual in pixels (infinite
    where the point left the frame: nothing there to carry back).
    """
    h, w = flow.forward.shape[1:3]
    there, back = (flow.forward[t], flow.backward[t]) if forward else (
        flow.backward[t - 1], flow.forward[t - 1]
    )  # fmt: skip
    f = _sample(there, x, y)
    nx, ny = x + f[..., 0], y + f[..., 1]
    g = _sample(back, nx, ny)
    err = np.hypot(f[..., 0] + g[..., 0], f[..., 1] + g[..., 1])
    err[(nx < 0) | (nx > w - 1) | (ny < 0) | (ny > h - 1)] = np.inf
    return nx, ny, err


def pixel_grid(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (x, y) of a frame, float32: the start of every trace."""
    h, w = size
    return np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))


def trace(flow: Flow, start: int, end: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each pixel of frame ``start`` lies in frame ``end``, and the chain's error.

    Follows the backward flows when ``end < start`` and the forward flows otherwise. The error
    is the summed forward–backward residual of every step, in pixels.
    """
    x, y = pixel_grid(flow.forward.shape[1:3])
    err = np.zeros(x.shape, np.float32)
    direction = 1 if end > start else -1
    for t in range(start, end, direction):
        x, y, e = step(flow, t, direction > 0, x, y)
        err += e
    return x, y, err


def _pull(labels: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return cv2.remap(
        labels, x, y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=VOID
    )


def propagate(labels: np.ndarray, keyframes: list[int], flow: Flow) -> np.ndarray:
    """Labels for every frame from those of ``keyframes`` (each keyframe keeps its own).

    Frames before the first or after the last keyframe take the one nearest keyframe; frames in
    between choose per pixel between the two enclosing keyframes by the smaller chain error.
    """
    keys = sorted(set(keyframes))
    if not keys:
        raise ValueError("propagation needs at least one keyframe")
    out = np.full_like(labels, VOID)
    for k in keys:
        out[k] = labels[k]
    for t in range(len(labels)):
        if t in keys:
            continue
        before = [k for k in keys if k < t]
        after = [k for k in keys if k > t]
        candidates = []
        for k in ([before[-1]] if before else []) + ([after[0]] if after else []):
            x, y, err = trace(flow, t, k)
            candidates.append((_pull(labels[k], x, y), err))
        if len(candidates) == 1:
            out[t] = candidates[0][0]
            continue
        (a, ea), (b, eb) = candidates
        out[t] = np.where(ea <= eb, a, b)
    return out


def every_kth(frames: int, k: int) -> list[int]:
    """Keyframes 0, k, 2k, … plus the last frame, as in the propagate-K baseline."""
    return sorted(set(range(0, frames, k)) | {frames - 1})


def propagate_human(
    human: np.ndarray, annotated: np.ndarray, flow: Flow, layers: np.ndarray | None = None
) -> np.ndarray:
    """Plain propagation of the human labels as they stand: the frames a human labelled in
    full are the keyframes of :func:`propagate`; every other human label (a sample, a class
    layer) is kept on its own frame. With no frame labelled in full, only those labels (void
    elsewhere).

    The yardstick of the label generator: what carrying exactly the same human labels along
    the flow, with no network, gives (the benchmark's ``propagate_same`` column).
    """
    n = len(human)
    full = np.flatnonzero(annotated.reshape(n, -1).all(1))
    out = propagate(human, list(full), flow) if full.size else np.full_like(human, VOID)
    for extra in (layers, human):
        if extra is not None:
            said = extra != VOID
            out[said] = extra[said]
    return out


def next_k(k: int) -> int:
    """The next, sparser propagate-K a grid tries when its sparsest still reaches a target."""
    return k + max(2, k // 2)
