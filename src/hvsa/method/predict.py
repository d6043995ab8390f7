"""Running the network over a whole video: softmax probabilities and feature maps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from hvsa.data.arrays import load_arrays, save_arrays
from hvsa.data.spill import DiskTensor, empty, like
from hvsa.method.network import SegmentationNet


@dataclass
class Prediction:
    """probs (N,C,h,w) at working size, float16 (a video's largest array: three digits are far
    more than ranking samples and voting need, and half the memory; every step computes in
    float32 a few frames at a time); features (N,F,hf,wf) float32 holding float16-rounded
    values, the precision a campaign's files keep them at, so that the in-process loop and the
    DVC stages select from the same numbers. probs may be a :class:`MeanProbs` where it is a
    vote for the labels alone (``View.label_vote``): it supports ``len``, ``shape``, ``dtype``
    and indexing along frames, nothing else (no ``.float()``, ``.clone()``, saving)."""

    probs: torch.Tensor | DiskTensor | MeanProbs  # MeanProbs: a vote for the labels alone
    features: torch.Tensor | DiskTensor


@torch.no_grad()
def predict(
    model: SegmentationNet,
    frames: torch.Tensor,
    batch_size: int,
    device: torch.device,
    scratch: Path | None = None,
) -> Prediction:
    """Predict every frame (N,3,h,w); results are kept on the CPU to bound device memory.

    With ``scratch`` the probabilities and features go to disk a batch at a time (each a
    :class:`DiskTensor` there): what a long video's round holds instead of all of them.
    """
    model.eval()
    n = len(frames)
    probs = feats = None
    for start in range(0, n, batch_size):
        logits, hidden = model(frames[start : start + batch_size].to(device))
        p, h = logits.softmax(1).half().cpu(), hidden.half().float().cpu()
        if probs is None:
            probs = empty(scratch, (n, *p.shape[1:]), torch.float16)
            feats = empty(scratch, (n, *h.shape[1:]), torch.float32)
        probs[start : start + len(p)] = p
        feats[start : start + len(h)] = h
    if isinstance(probs, DiskTensor):
        probs.flush(), feats.flush()
    return Prediction(probs, feats)


@torch.no_grad()
def predict_mirrored(
    model: SegmentationNet, frames: torch.Tensor, batch_size: int, device: torch.device
) -> torch.Tensor:
    """(N,C,h,w) float16 softmax of the frames (N,3,h,w) mirrored left-right, mirrored back.

    Why: what a network says about a frame it was fine-tuned on is not what it says about the
    frames it has not seen — at 1 Hz it had 80.6 % of a labelled frame's pixels right against
    73.7 % of the others' (0001TP, ``benchmarks/estimate_probe.py``). Mirrored, a street is
    still a street but the texture at every place is new to it (73.9 %): fine-tuning crops but
    never mirrors. It also loses what the network learned of the video's left-right layout
    (0016E5_15hz from nothing: 49.5 % mirrored against 87.8 %), so the estimate's probes
    (``hvsa.method.estimate``) take this vote for its low reading and the network's own for
    its high one.
    """
    model.eval()
    out = []
    for start in range(0, len(frames), batch_size):
        logits, _ = model(frames[start : start + batch_size].to(device).flip(-1))
        out.append(logits.softmax(1).flip(-1).half().cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float16)


class MeanProbs:
    """The mean of two networks' (N,C,h,w) probabilities, made for the frames read and never
    kept whole: each read is ``((a.float() + b.float()) / 2).half()`` of those frames, the
    numbers :func:`mean_prediction` stores. Why: where the mean writes the labels alone
    (``fusion.vote_for: labels``) fusion reads it one frame at a time, and a stored mean is one
    more (N,C,h,w) array (0.4 GiB on a 101-frame video of 360x480 at 11 classes)."""

    dtype = torch.float16

    def __init__(self, a: torch.Tensor | DiskTensor, b: torch.Tensor | DiskTensor):
        if tuple(a.shape) != tuple(b.shape):
            raise ValueError(f"two votes of different shapes: {tuple(a.shape)}, {tuple(b.shape)}")
        self.a, self.b = a, b
        self.shape = tuple(a.shape)

    def __len__(self) -> int:
        return len(self.a)

    def __getitem__(self, index) -> torch.Tensor:
        return ((self.a[index].float() + self.b[index].float()) / 2).half()


def mean_prediction(a: Prediction, b: Prediction, chunk: int = 8, lazy: bool = False) -> Prediction:
    """The mean of two networks' probabilities (float32 sums, float16 out), with ``a``'s
    features: ``a`` is the current network, whose features the next selection compares samples
    by. Stored a few frames at a time where ``a`` keeps its frames, or, ``lazy``, a
    :class:`MeanProbs` that makes each frame when it is read (for a reader of single frames)."""
    mean = MeanProbs(a.probs, b.probs)
    if lazy:
        return Prediction(mean, a.features)
    out = like(a.probs, tuple(a.probs.shape), torch.float16)
    for start in range(0, len(a.probs), chunk):
        end = min(start + chunk, len(a.probs))
        out[start:end] = mean[start:end]
    if isinstance(out, DiskTensor):
        out.flush()
    return Prediction(out, a.features)


def save_prediction(path: Path, pred: Prediction) -> None:
    """float16 on disk: probabilities and features need no more for ranking samples."""
    save_arrays(path, probs=pred.probs.half().numpy(), features=pred.features.half().numpy())


def load_prediction(path: Path) -> Prediction:
    data = load_arrays(path, "prediction")
    return Prediction(torch.from_numpy(data["probs"]), torch.from_numpy(data["features"]).float())
