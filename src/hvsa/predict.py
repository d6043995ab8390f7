"""Running the network over a whole video: softmax probabilities and feature maps."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hvsa.network import SegNet


@dataclass
class Prediction:
    """probs (N,C,h,w) float32 at working size; features (N,F,hf,wf) float32."""

    probs: torch.Tensor
    features: torch.Tensor


@torch.no_grad()
def predict(
    model: SegNet, frames: torch.Tensor, batch_size: int, device: torch.device
) -> Prediction:
    """Predict every frame (N,3,h,w); results are kept on the CPU to bound device memory."""
    model.eval()
    probs, feats = [], []
    for start in range(0, len(frames), batch_size):
        logits, hidden = model(frames[start : start + batch_size].to(device))
        probs.append(logits.softmax(1).cpu())
        feats.append(hidden.cpu())
    return Prediction(torch.cat(probs), torch.cat(feats))
