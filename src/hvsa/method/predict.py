"""Running the network over a whole video: softmax probabilities and feature maps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from hvsa.data.arrays import load_arrays, save_arrays
from hvsa.data.spill import DiskTensor
from hvsa.method.network import SegmentationNet


@dataclass
class Prediction:
    """probs (N,C,h,w) at working size, float16 (a video's largest array: three digits are far
    more than ranking samples and voting need, and half the memory; every step computes in
    float32 a few frames at a time); features (N,F,hf,wf) float32."""

    probs: torch.Tensor | DiskTensor
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
    :class:`DiskTensor` there, the features rounded to float16 precision as a round's view
    stores them): what a long video's round holds instead of all of them.
    """
    model.eval()
    if scratch is not None:
        return _predict_to_disk(model, frames, batch_size, device, scratch)
    probs, feats = [], []
    for start in range(0, len(frames), batch_size):
        logits, hidden = model(frames[start : start + batch_size].to(device))
        probs.append(logits.softmax(1).half().cpu())
        feats.append(hidden.cpu())
    return Prediction(torch.cat(probs), torch.cat(feats))


def _predict_to_disk(
    model: SegmentationNet, frames, batch_size: int, device: torch.device, scratch: Path
) -> Prediction:
    n = len(frames)
    probs = feats = None
    for start in range(0, n, batch_size):
        logits, hidden = model(frames[start : start + batch_size].to(device))
        p, h = logits.softmax(1).half().cpu(), hidden.half().float().cpu()
        if probs is None:
            probs = DiskTensor(scratch, (n, *p.shape[1:]), torch.float16)
            feats = DiskTensor(scratch, (n, *h.shape[1:]), torch.float32)
        probs[start : start + len(p)] = p
        feats[start : start + len(h)] = h
    return Prediction(probs.flush(), feats.flush())


def save_prediction(path: Path, pred: Prediction) -> None:
    """float16 on disk: probabilities and features need no more for ranking samples."""
    save_arrays(path, probs=pred.probs.half().numpy(), features=pred.features.half().numpy())


def load_prediction(path: Path) -> Prediction:
    data = load_arrays(path, "prediction")
    return Prediction(torch.from_numpy(data["probs"]), torch.from_numpy(data["features"]).float())
