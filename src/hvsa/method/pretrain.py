"""Pretraining: the network the method starts from, trained on other labelled videos.

No weights can be downloaded here, so the starting point is trained by us, from scratch, on
videos other than the target (other seeds of the generator, or other CamVid drives).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hvsa.config import Config
from hvsa.data.scaling import VOID, frames_to_tensor, labels_to_tensor, work_size
from hvsa.data.video import ClassList, Video
from hvsa.errors import HvsaError
from hvsa.method.network import SegmentationNet, pick_device


def _training_set(
    videos: Sequence[Video], scale: float
) -> tuple[torch.Tensor, torch.Tensor, ClassList]:
    if not videos:
        raise HvsaError("pretraining needs at least one labelled video")
    classes = videos[0].classes
    xs, ys = [], []
    for video in videos:
        if video.labels is None:
            raise HvsaError(f"{video.path} has no labels/ folder: pretraining needs labels")
        if video.classes is None:
            raise HvsaError(f"{video.path} has no classes.json: pretraining needs the class list")
        if video.classes != classes:
            raise HvsaError(f"{video.path} has a different class list than {videos[0].path}")
        size = work_size(video.size, scale)
        if xs and size != tuple(xs[0].shape[-2:]):
            raise HvsaError(f"{video.path} has another frame size than {videos[0].path}")
        keep = [i for i in range(len(video)) if (video.labels[i] != VOID).any()]
        xs.append(frames_to_tensor(video.frames[keep], size))
        ys.append(labels_to_tensor(video.labels[keep], size))
    assert classes is not None
    return torch.cat(xs), torch.cat(ys), classes


def _augment(
    x: torch.Tensor,
    y: torch.Tensor,
    min_side: float,
    gen: torch.Generator,
    crop: tuple[int, int] | None = None,
):
    """Random crop resized to the output size, plus horizontal flip.

    Without ``crop`` the output is the whole frame size and the window's sides are a share in
    [min_side, 1] of the frame's. With ``crop`` (``model.train_crop``) the output is a crop-sized
    window, its sides a factor in [min_side, 1 / min_side] of the crop's (zooming both ways, as
    the whole-frame windows do), so a full-resolution network trains at a small step's cost.
    """
    n, _, h, w = x.shape
    oh, ow = (h, w) if crop is None else (min(crop[0], h), min(crop[1], w))
    out_x, out_y = [], []
    for i in range(n):
        if crop is None:
            s = min_side + (1 - min_side) * torch.rand(1, generator=gen).item()
            ch, cw = max(16, int(h * s)), max(16, int(w * s))
        else:
            s = min_side + (1 / min_side - min_side) * torch.rand(1, generator=gen).item()
            ch, cw = min(h, max(16, int(oh * s))), min(w, max(16, int(ow * s)))
        top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
        xi = x[i : i + 1, :, top : top + ch, left : left + cw]
        yi = y[i : i + 1, None, top : top + ch, left : left + cw].float()
        xi = F.interpolate(xi, size=(oh, ow), mode="bilinear", align_corners=False)
        yi = F.interpolate(yi, size=(oh, ow), mode="nearest").long()[:, 0]
        if torch.rand(1, generator=gen).item() < 0.5:
            xi, yi = xi.flip(-1), yi.flip(-1)
        out_x.append(xi)
        out_y.append(yi)
    return torch.cat(out_x), torch.cat(out_y)


def warmup_cosine(step: int, total: int, warmup_share: float) -> float:
    """LR factor: linear warm-up over ``warmup_share`` of the steps, then cosine decay to zero.

    Training from scratch without a warm-up diverges easily at the start.
    """
    warm = max(1, int(total * warmup_share))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def pretrain(
    videos: Sequence[Video], cfg: Config, steps: int | None = None
) -> tuple[SegmentationNet, ClassList, list[float]]:
    """Train a fresh network on labelled videos; returns the model, classes and loss curve."""
    p = cfg.pretrain
    torch.manual_seed(p.seed)
    gen = torch.Generator().manual_seed(p.seed)
    x, y, classes = _training_set(videos, cfg.model.scale)
    device = pick_device(cfg.model.device)
    model = SegmentationNet(cfg.model.arch, len(classes)).to(device)
    total = steps if steps is not None else p.steps
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, partial(warmup_cosine, total=total, warmup_share=p.warmup_share)
    )
    losses: list[float] = []
    model.train()
    bar = tqdm(range(total), desc="pretrain", unit="step")
    for _ in bar:
        idx = torch.randint(0, len(x), (min(p.batch_size, len(x)),), generator=gen)
        xb, yb = _augment(x[idx], y[idx], p.crop_scale, gen, cfg.model.train_crop)
        logits, _ = model(xb.to(device))
        loss = F.cross_entropy(logits, yb.to(device), ignore_index=VOID)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    model.eval()
    return model, classes, losses
