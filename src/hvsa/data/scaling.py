"""Moving between full resolution (labels, samples, clicks) and the network's working size.

Labels and clicks always live at full resolution; the network sees frames scaled by
``model.scale`` so that a round stays fast on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from hvsa.data.video import VOID


def work_size(full: tuple[int, int], scale: float) -> tuple[int, int]:
    """Working (h, w) for a full (H, W); at least 32 px so the backbone's stride-16 map exists."""
    return max(32, round(full[0] * scale)), max(32, round(full[1] * scale))


def frames_to_tensor(frames: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(N,H,W,3) uint8 → (N,3,h,w) float32 in 0..255 at the working size."""
    h, w = size
    if frames.shape[1:3] != (h, w):
        frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()


class WorkFrames:
    """An (N, ...) tensor at the working size made a batch at a time from an array of frames
    read when indexed (:class:`hvsa.data.chunks.LazyFrames`): what prediction and fine-tuning
    index (a slice, or a tensor of frame numbers) without the whole video's tensor in memory.

    ``convert`` turns a stacked batch of source frames into the batch's tensor.
    """

    def __init__(
        self,
        source,
        convert: Callable[[np.ndarray], torch.Tensor],
        shape: tuple[int, ...],
    ):
        self.source, self.convert, self.shape = source, convert, tuple(shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        if isinstance(key, (int, np.integer)):
            return self.convert(self.source[[int(key)]])[0]
        return self.convert(self.source[key])


def spread_frames(frame_sets: list[np.ndarray], count: int, scale: float) -> list[torch.Tensor]:
    """Up to ``count`` frames evenly spaced through each video (shared by length, at least one
    a video), each video's as one (n,3,h,w) float tensor at its working size (``scale``)."""
    total = sum(len(f) for f in frame_sets)
    picked = []
    for frames in frame_sets:
        n = min(len(frames), max(1, round(count * len(frames) / max(total, 1))))
        index = np.unique(np.linspace(0, len(frames) - 1, n).round().astype(int))
        size = work_size(frames.shape[1:3], scale)
        picked.append(frames_to_tensor(frames[index], size))
    return picked


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N,H,W) uint8 labels → (N,h,w) uint8 by nearest neighbour (void stays 255)."""
    h, w = size
    if labels.shape[1:3] == (h, w):
        return labels
    return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) for m in labels])


def labels_to_tensor(labels: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(N,H,W) uint8 labels → (N,h,w) int64 by nearest neighbour (void stays 255)."""
    return torch.from_numpy(np.ascontiguousarray(resize_labels(labels, size))).long()


def upsample_argmax(probs: torch.Tensor, size: tuple[int, int], chunk: int = 8) -> np.ndarray:
    """(N,C,h,w) scores → (N,H,W) uint8 classes after bilinear upsampling to full size.

    Done ``chunk`` frames at a time: a whole video's full-size scores would not fit in memory.
    """
    out = np.empty((len(probs), *size), np.uint8)
    for start in range(0, len(probs), chunk):
        part = probs[start : start + chunk].float()
        up = F.interpolate(part, size=size, mode="bilinear", align_corners=False)
        out[start : start + chunk] = up.argmax(1).to(torch.uint8).cpu().numpy()
    return out


def downsample_segments(segments: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N,H,W) int region ids → (N,h,w) by nearest neighbour."""
    h, w = size
    if segments.shape[1:3] == (h, w):
        return segments
    if segments.strides[0] == 0:  # one map shared by every frame (whole frames, rectangles)
        one = cv2.resize(segments[0].astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)
        return np.broadcast_to(one, (len(segments), h, w))
    return np.stack(
        [cv2.resize(s.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST) for s in segments]
    )


__all__ = [
    "VOID",
    "downsample_segments",
    "frames_to_tensor",
    "labels_to_tensor",
    "resize_labels",
    "upsample_argmax",
    "work_size",
]
