"""The label generator: human labels carried along the flow, fused with the network per pixel.

Why not just the network? A network adapted to one video at half resolution caps near 82 % mIoU
even with every frame labelled for it (``../shared/FINDINGS.md``): borders and thin objects are
where it fails, and they decide mIoU. A human label carried one or two frames along the optical
flow is far better there, and worse only where the flow breaks (occlusions, far frames). So each
pixel takes a vote:

* from every human label nearby in time, in each direction the nearest labelled frame that covers
  the pixel (partly labelled frames let the next one fill in), followed back along the chained
  flow and weighted by ``exp(-chain error / sigma) / distance``;
* from the network's softmax, with weight ``network_weight`` — it decides where no carried
  label is trustworthy;

and the normalised votes are refined at image edges with a guided filter on the frame (carried
borders drift by a pixel or two; the frame's own edges put them back). Human labels of the frame
itself win outright. The fused probabilities also feed selection: a pixel that a nearby human
label explains is not uncertain, whatever the network thinks.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hvsa.config import FusionConfig
from hvsa.motion import Flow
from hvsa.propagate import grid, step
from hvsa.video import VOID


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(H,W) uint8 → (C,H,W) float32; void pixels are all zero."""
    return (labels[None] == np.arange(num_classes, dtype=labels.dtype)[:, None, None]).astype(
        np.float32
    )


def _pull(planes: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear sample of (C,H,W) planes at float coordinates; outside the frame is 0."""
    return np.stack(
        [
            cv2.remap(p, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            for p in planes
        ]
    )


def _carry(labels: np.ndarray, num_classes: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(C,H,W) one-hot of ``labels`` pulled to (x, y); only classes present are resampled.

    A partly labelled frame (superpixels, rectangles) holds a few classes: resampling only
    those halves the time of fusion, which for partial labels walks every chain to its end.
    """
    out = np.zeros((num_classes, *x.shape), np.float32)
    present = np.unique(labels)
    present = present[present != VOID]
    if present.size:
        planes = (labels[None] == present[:, None, None]).astype(np.float32)
        out[present] = _pull(planes, x, y)
    return out


def carried_votes(
    human: np.ndarray,
    labelled: np.ndarray,
    flow: Flow,
    t: int,
    num_classes: int,
    cfg: FusionConfig,
    frames: np.ndarray | None = None,
    spoken: np.ndarray | None = None,
) -> np.ndarray:
    """(C,H,W) votes of the human labels of other frames for frame ``t``.

    In each direction the chain walks at most ``cfg.window`` frames; a pixel takes its vote from
    the nearest labelled frame that covers it (``remaining`` is what nearer frames left open),
    so a fully labelled keyframe shadows everything behind it, as in propagate-K. ``spoken``
    (N,H,W) marks where a human answered, void included: a pixel the human called void covers
    too, else every frame's few void pixels kept each chain walking the whole window.
    """
    votes = np.zeros((num_classes, *human.shape[1:]), np.float32)
    n = len(human)
    for forward in (False, True):
        sign = 1 if forward else -1
        reach = [t + sign * d for d in range(1, cfg.window + 1) if 0 <= t + sign * d < n]
        if not any(labelled[k] for k in reach):
            continue
        x, y = grid(human.shape[1:])
        err = np.zeros(x.shape, np.float32)
        remaining = np.ones(x.shape, np.float32)
        at = t
        for k in reach:
            x, y, e = step(flow, at, forward, x, y)
            err += e
            at = k
            # a point that left the frame or whose chain broke beyond float32's reach can never
            # vote again, and no labelled frame ever covers it: it must not keep the chain
            # walking (together with ``spoken``, this is what lets a chain end early)
            fit = np.exp(-np.minimum(err, 1e3) / cfg.sigma)
            remaining[fit == 0] = 0
            if remaining.max() < cfg.min_remaining:
                break
            if not labelled[k]:
                continue
            carried = _carry(human[k], num_classes, x, y)
            cover = carried.sum(0) if spoken is None else _pull(spoken[k, None] * 1.0, x, y)[0]
            trust = fit / abs(k - t) ** cfg.distance_power
            if frames is not None and cfg.photo_sigma:
                there = _pull(frames[k].transpose(2, 0, 1).astype(np.float32), x, y)
                diff = np.abs(there - frames[t].transpose(2, 0, 1)).mean(0)
                trust *= np.exp(-diff / cfg.photo_sigma)
            votes += carried * (remaining * trust)[None]
            remaining *= 1 - np.clip(cover, 0, 1)
            if remaining.max() < cfg.min_remaining:
                break
    return votes


def guided_filter(guide: np.ndarray, planes: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter of (C,H,W) planes by a grey (H,W) guide in [0, 1].

    Locally each output plane is an affine function of the guide, so a soft border between two
    classes snaps to the nearest strong edge of the frame.
    """
    size = (2 * radius + 1, 2 * radius + 1)

    def box(a: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(a, -1, size, borderType=cv2.BORDER_REFLECT)

    mean_i = box(guide)
    var_i = box(guide * guide) - mean_i * mean_i
    out = np.empty_like(planes)
    for c, p in enumerate(planes):
        mean_p = box(p)
        a = (box(guide * p) - mean_i * mean_p) / (var_i + eps)
        b = mean_p - a * mean_i
        out[c] = box(a) * guide + box(b)
    return out


def fuse_frame(
    net_probs: torch.Tensor,
    votes: np.ndarray,
    frame: np.ndarray,
    own: np.ndarray,
    cfg: FusionConfig,
) -> np.ndarray:
    """(C,H,W) fused probabilities of one frame from the network's (C,h,w) softmax.

    ``own`` is the frame's own human labels (H,W), which are certain.
    """
    size = frame.shape[:2]
    net = F.interpolate(net_probs[None].float(), size=size, mode="bilinear", align_corners=False)
    # the uniform prior leaves every argmax as it is but keeps a pixel that only the network
    # speaks for uncertain: the network is sure of itself far more often than it is right
    fused = votes + cfg.network_weight * net[0].numpy() + cfg.prior / len(votes)
    fused /= fused.sum(0, keepdims=True).clip(1e-8)
    if cfg.guided_radius > 0:
        guide = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
        fused = guided_filter(guide, fused, cfg.guided_radius, cfg.guided_eps).clip(0, 1)
        fused /= fused.sum(0, keepdims=True).clip(1e-8)
    mine = own != VOID
    if mine.any():
        fused[:, mine] = one_hot(own, len(fused))[:, mine]
    return fused


def fuse(
    net_probs: torch.Tensor,
    human: np.ndarray,
    frames: np.ndarray,
    flow: Flow,
    cfg: FusionConfig,
    spoken: np.ndarray | None = None,
) -> tuple[np.ndarray, torch.Tensor]:
    """Labels (N,H,W) uint8 for the whole video, and fused probabilities at the network's size.

    ``net_probs`` is the network's (N,C,h,w) softmax, ``human`` (N,H,W) with 255 where no human
    spoke; ``spoken`` (N,H,W) bool where a human answered, void included (see
    :func:`carried_votes`). The returned probabilities (N,C,h,w) replace the network's for
    selection.
    """
    n, num_classes, h, w = net_probs.shape
    labelled = (human != VOID).reshape(n, -1).any(1)
    labels = np.empty(human.shape, np.uint8)
    small = torch.empty((n, num_classes, h, w), dtype=torch.float32)
    for t in tqdm(range(n), desc="fuse labels", leave=False):
        votes = carried_votes(human, labelled, flow, t, num_classes, cfg, frames, spoken)
        fused = fuse_frame(net_probs[t], votes, frames[t], human[t], cfg)
        labels[t] = fused.argmax(0)
        small[t] = F.interpolate(torch.from_numpy(fused)[None], size=(h, w), mode="area")[0]
    return labels, small
