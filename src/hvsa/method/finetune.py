"""Test-time fine-tuning on the video being annotated.

Loss = cross-entropy on every human-labelled pixel so far
     + λ · temporal consistency: each frame's prediction should match its next frame's
       prediction warped back by the optical flow, where the flow is trustworthy.

The supervised term teaches the classes where a human spoke; the temporal term carries that
knowledge to the unlabelled frames along the motion, which is what makes sparse labels enough.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from hvsa.config import FinetuneConfig
from hvsa.data.video import VOID
from hvsa.method.motion import torch_warp
from hvsa.method.network import SegmentationNet


@dataclass
class TrainingData:
    """Everything at working resolution: frames (N,3,h,w) float, labels (N,h,w) uint8 or long
    (255 = unlabelled), forward flow (N-1,h,w,2) and its validity (N-1,h,w) bool.

    ``human_frames`` are the frames holding human labels, which ``labelled_share`` of a batch is
    drawn from; by default every frame with a label (they differ once ``labels`` also hold
    pseudo-labels carried from human ones).
    """

    frames: torch.Tensor
    labels: torch.Tensor
    flow: torch.Tensor
    valid: torch.Tensor
    human_frames: np.ndarray | None = None


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over labelled pixels only; exactly 0 when none is labelled."""
    if not (labels != VOID).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=VOID)


def temporal_loss(
    probs: torch.Tensor, probs_next: torch.Tensor, flow: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """Mean total-variation distance between P_t and P_{t+1} warped into frame t.

    ``flow`` is the forward flow t→t+1, so backward-warping P_{t+1} by it aligns it with frame
    t. Pixels where ``valid`` is False (occluded or inconsistent flow) do not count.
    """
    warped = torch_warp(probs_next, flow)
    dist = 0.5 * (probs - warped).abs().sum(1)
    weight = valid.float()
    return (dist * weight).sum() / weight.sum().clamp_min(1.0)


def _freeze_batchnorm(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def _pick_pairs(
    n: int, labelled: np.ndarray, cfg: FinetuneConfig, rng: np.random.Generator
) -> np.ndarray:
    """First frames ``a`` of (a, a+1) pairs, favouring frames that hold human labels."""
    firsts = []
    for _ in range(cfg.batch_size):
        if labelled.size and rng.random() < cfg.labelled_share:
            t = int(rng.choice(labelled))
        else:
            t = int(rng.integers(0, n))
        firsts.append(min(t, n - 2))
    return np.asarray(firsts)


def crop_pairs(
    data: TrainingData, a: torch.Tensor, crop: tuple[int, int] | None, rng: np.random.Generator
) -> TrainingData:
    """The pairs (a, a+1) as a batch: frames and labels (2B, ...), flow and validity (B, ...).

    With ``crop`` each pair is cut to one random (h, w) window, the same for both frames, so a
    network working at full resolution trains at the cost of a half-resolution step. Flow stays
    in pixels, so only the pixels whose flow leaves the window lose their temporal target.
    """
    b = len(a)
    frames = torch.cat([data.frames[a], data.frames[a + 1]])
    labels = torch.cat([data.labels[a], data.labels[a + 1]])
    flow, valid = data.flow[a], data.valid[a]
    h, w = frames.shape[-2:]
    if crop is None or (crop[0] >= h and crop[1] >= w):
        return TrainingData(frames, labels, flow, valid)
    ch, cw = min(crop[0], h), min(crop[1], w)
    tops = rng.integers(0, h - ch + 1, b)
    lefts = rng.integers(0, w - cw + 1, b)

    def cut(t: torch.Tensor, i: int) -> torch.Tensor:
        return t[..., tops[i % b] : tops[i % b] + ch, lefts[i % b] : lefts[i % b] + cw]

    frames = torch.stack([cut(frames[i], i) for i in range(2 * b)])
    labels = torch.stack([cut(labels[i], i) for i in range(2 * b)])
    flow = torch.stack([cut(flow[i].permute(2, 0, 1), i).permute(1, 2, 0) for i in range(b)])
    valid = torch.stack([cut(valid[i], i) for i in range(b)])
    gy, gx = torch.meshgrid(torch.arange(ch), torch.arange(cw), indexing="ij")
    tx, ty = gx + flow[..., 0], gy + flow[..., 1]
    inside = (tx >= 0) & (tx <= cw - 1) & (ty >= 0) & (ty <= ch - 1)
    return TrainingData(frames, labels, flow.contiguous(), valid & inside)


def _pair_losses(
    model: SegmentationNet, pairs: TrainingData, neighbour_grad: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy and temporal term of the pairs (a, a+1) that ``crop_pairs`` batched.

    With ``neighbour_grad`` both frames of a pair learn from both terms. Without it the next
    frame's prediction is only the temporal term's target (computed without gradient, as a
    consistency teacher): half the backward pass, which is most of a step's time on a CPU; the
    next frame's own labels still teach whenever it is drawn as a first frame.
    """
    b = len(pairs.flow)
    flow, valid = pairs.flow.to(device), pairs.valid.to(device)
    if neighbour_grad:
        logits, _ = model(pairs.frames.to(device))
        probs = logits.softmax(1)
        ce = supervised_loss(logits, pairs.labels.to(device).long())
        return ce, temporal_loss(probs[:b], probs[b:], flow, valid)
    logits, _ = model(pairs.frames[:b].to(device))
    with torch.no_grad():
        target = model(pairs.frames[b:].to(device))[0].softmax(1)
    ce = supervised_loss(logits, pairs.labels[:b].to(device).long())
    return ce, temporal_loss(logits.softmax(1), target, flow, valid)


def step_lr(step: int, cfg: FinetuneConfig) -> float:
    """The learning rate of step ``step`` (0-based) of a round's ``cfg.steps``.

    ``warmup`` steps rise linearly to ``lr``: AdamW starts each round with fresh moments, and
    its first steps move every weight by about ``lr`` whatever its gradient. ``cosine`` then
    falls to 0 at the last step, so the round ends on a settled network rather than wherever
    the last noisy step left it.
    """
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / (cfg.warmup + 1)
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(cfg.steps - cfg.warmup, 1)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * (step - cfg.warmup) / span))


class _IterateMean:
    """Running mean of the weights over a round's last ``share`` of steps (Polyak averaging):
    the mean of nearby iterates is a flatter, less noisy point than the last one."""

    def __init__(self, model: nn.Module, steps: int, share: float) -> None:
        self.model = model
        self.first = steps - max(int(round(steps * share)), 1) if share > 0 else steps
        self.count = 0
        self.mean: list[torch.Tensor] = []

    def add(self, step: int) -> None:
        if step < self.first:
            return
        params = [p.detach() for p in self.model.parameters()]
        if not self.mean:
            self.mean = [p.clone() for p in params]
        else:
            for m, p in zip(self.mean, params, strict=True):
                m.add_(p - m, alpha=1.0 / (self.count + 1))
        self.count += 1

    def apply(self) -> None:
        if self.count > 1:
            with torch.no_grad():
                for p, m in zip(self.model.parameters(), self.mean, strict=True):
                    p.copy_(m)


def finetune(
    model: SegmentationNet,
    data: TrainingData,
    cfg: FinetuneConfig,
    device: torch.device,
    seed: int = 0,
    crop: tuple[int, int] | None = None,
) -> list[dict[str, float]]:
    """Run ``cfg.steps`` optimiser steps in place; returns the per-step loss terms.

    ``crop`` (``model.train_crop``): train on random windows of this size of each pair. The
    learning rate follows ``step_lr``; with ``cfg.average_last`` the network keeps the mean of
    the weights over that share of the last steps.
    """
    n = len(data.frames)
    labelled = data.human_frames
    if labelled is None:
        labelled = np.flatnonzero((data.labels != VOID).flatten(1).any(1).numpy())
    rng = np.random.default_rng(cfg.seed + seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    mean = _IterateMean(model, cfg.steps, cfg.average_last)
    start = [p.detach().clone() for p in model.parameters()] if cfg.keep_change < 1 else None
    model.train()
    if cfg.freeze_bn:
        _freeze_batchnorm(model)
    history = []
    for step in tqdm(range(cfg.steps), desc="fine-tune", unit="step", leave=False):
        for group in opt.param_groups:
            group["lr"] = step_lr(step, cfg)
        a = torch.from_numpy(_pick_pairs(n, labelled, cfg, rng))
        pairs = crop_pairs(data, a, crop, rng)
        ce, tc = _pair_losses(model, pairs, cfg.neighbour_grad, device)
        loss = ce + cfg.temporal_weight * tc
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        mean.add(step)
        history.append(
            {"loss": float(loss.detach()), "ce": float(ce.detach()), "temporal": float(tc.detach())}
        )
    mean.apply()
    if start is not None:  # the network between the round's start and its end (WiSE-FT)
        with torch.no_grad():
            for p, p0 in zip(model.parameters(), start, strict=True):
                p.lerp_(p0, 1.0 - cfg.keep_change)
    model.eval()
    return history
