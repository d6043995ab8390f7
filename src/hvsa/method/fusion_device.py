"""The label generator's per-frame work on a torch device (a GPU when ``model.device`` finds one).

Same rule, same numbers as :mod:`hvsa.method.fusion` (chains walked along the flow, votes
weighted by chain error, distance and colour, the network's vote, the guided filter, the
frame's own labels winning): :func:`hvsa.method.fusion.fuse` hands each frame here when it is
given a device, and the tests hold the two to the same labels. Why a second kernel and not one:
on the CPU the OpenCV path with its sparse gather (only the pixels that can land on a partial
label) is fastest, and on a GPU the dense walk over every pixel is, since a step is a few
``grid_sample`` calls whatever the share of pixels that matter. Bilinear sampling differs by
OpenCV's 1/32-pixel fixed point, so a pixel near a tie may take the other class (measured in
``tests/test_fusion.py``: over 99.9 % of labels equal).

Arrays that every chain reads — each frame's flows, labelled frames' labels, answered masks
and colours — are moved to the device once and kept while a byte budget allows (least
recently used out first): consecutive frames walk nearly the same chain, so a frame's walk
then reads almost nothing from the host.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from hvsa.config import FusionConfig
from hvsa.data.video import VOID
from hvsa.method.class_layers import apply_layers
from hvsa.method.motion import Flow

BUDGET_SHARE = 0.25  # of the device's free memory at the start, for the per-frame cache
CPU_BUDGET = 2 * 2**30  # the cache's bytes when the device is the CPU (the tests' reference)


class DeviceCache:
    """Per-frame arrays on the device, loaded once each and evicted least recently used first
    when more than ``budget`` bytes are held."""

    def __init__(self, device: torch.device, budget: int | None = None):
        if budget is None:
            if device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(device)
                budget = int(free * BUDGET_SHARE)
            else:
                budget = CPU_BUDGET
        self.device, self.budget, self.held = device, budget, 0
        self._items: OrderedDict[tuple, torch.Tensor] = OrderedDict()

    def get(self, key: tuple, load: Callable[[], np.ndarray | torch.Tensor]) -> torch.Tensor:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        value = load()
        tensor = (torch.from_numpy(np.ascontiguousarray(value)) if isinstance(value, np.ndarray)
                  else value).to(self.device)  # fmt: skip
        size = tensor.numel() * tensor.element_size()
        while self._items and self.held + size > self.budget:
            _, old = self._items.popitem(last=False)
            self.held -= old.numel() * old.element_size()
        self._items[key] = tensor
        self.held += size
        return tensor


def _grid(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(1,H,W,2) grid_sample coordinates of pixel positions (align_corners=True)."""
    h, w = x.shape
    return torch.stack((x * (2 / max(w - 1, 1)) - 1, y * (2 / max(h - 1, 1)) - 1), -1)[None]


def _sample(planes: torch.Tensor, grid: torch.Tensor, border: bool) -> torch.Tensor:
    """Bilinear sample of (C,H,W) planes; outside the frame the border (``border``) or 0 —
    OpenCV's BORDER_REPLICATE and BORDER_CONSTANT."""
    mode = "border" if border else "zeros"
    out = F.grid_sample(planes[None], grid, "bilinear", padding_mode=mode, align_corners=True)
    return out[0]


class ChainWalker:
    """The carried votes of one video's human labels, frame by frame, on ``device``.

    ``human`` (N,H,W) uint8 with 255 where nobody spoke, ``spoken`` (N,H,W) bool or None,
    ``frames`` (N,H,W,3) uint8 or None (no colour term), ``limit`` the frames a chain walks at
    most each way (:func:`hvsa.method.fusion.carry_limit`), ``named`` (N,H,W) bool or None the
    labels named for a whole region, which with ``cfg.named_shadow`` off vote but do not end a
    chain; ``trust`` frame → how much each of its labels counts
    (:func:`hvsa.method.fusion.named_trust`) or None, for labelled frames.
    """

    def __init__(
        self,
        human: np.ndarray,
        flow: Flow,
        cfg: FusionConfig,
        limit: int,
        num_classes: int,
        device: torch.device,
        frames: np.ndarray | None = None,
        spoken: np.ndarray | None = None,
        cache: DeviceCache | None = None,
        named: np.ndarray | None = None,
        trust: Callable[[int], np.ndarray | None] | None = None,
    ):
        self.human, self.flow, self.cfg, self.limit = human, flow, cfg, limit
        self.trust = trust
        self._weighed: dict[int, bool] = {}
        self.num_classes, self.device = num_classes, device
        self.frames, self.spoken = frames, spoken
        self.named = None if cfg.named_shadow else named  # walked past: they end no chain
        self.cache = cache or DeviceCache(device)
        self.labelled = (human != VOID).reshape(len(human), -1).any(1)
        self._present: dict[int, torch.Tensor] = {}
        h, w = human.shape[1:]
        self.x0, self.y0 = torch.meshgrid(
            torch.arange(w, dtype=torch.float32, device=device),
            torch.arange(h, dtype=torch.float32, device=device),
            indexing="xy",
        )

    def _flow(self, kind: str, t: int) -> torch.Tensor:
        arrays = {"forward": self.flow.forward, "backward": self.flow.backward}[kind]
        return self.cache.get(
            (kind, t),
            lambda: np.asarray(arrays[t], np.float32).transpose(2, 0, 1),
        )

    def _labels(self, k: int) -> torch.Tensor:
        return self.cache.get(("human", k), lambda: self.human[k])

    def _classes(self, k: int) -> torch.Tensor:
        if k not in self._present:
            present = np.unique(self.human[k])
            present = present[present != VOID].astype(np.int64)
            self._present[k] = torch.from_numpy(present).to(self.device)
        return self._present[k]

    def _colour(self, k: int) -> torch.Tensor:
        return self.cache.get(("frame", k), lambda: np.asarray(self.frames[k]).transpose(2, 0, 1))

    def _step(self, t: int, forward: bool, x: torch.Tensor, y: torch.Tensor):
        """:func:`hvsa.method.propagate.step` on the device."""
        h, w = x.shape
        there, back = (
            (self._flow("forward", t), self._flow("backward", t))
            if forward
            else (self._flow("backward", t - 1), self._flow("forward", t - 1))
        )
        f = _sample(there, _grid(x, y), border=True)
        nx, ny = x + f[0], y + f[1]
        g = _sample(back, _grid(nx, ny), border=True)
        err = torch.hypot(f[0] + g[0], f[1] + g[1])
        err[(nx < 0) | (nx > w - 1) | (ny < 0) | (ny > h - 1)] = torch.inf
        return nx, ny, err

    def votes(self, t: int) -> torch.Tensor:
        """(C,H,W) votes of the other frames' human labels for frame ``t``
        (:func:`hvsa.method.fusion.carried_votes`, every pixel walked)."""
        cfg, n = self.cfg, len(self.human)
        votes = torch.zeros((self.num_classes, *self.x0.shape), device=self.device)
        here = None
        if self.frames is not None and cfg.photo_sigma:
            here = self._colour(t).float()
        for forward in (False, True):
            sign = 1 if forward else -1
            reach = [t + sign * d for d in range(1, self.limit + 1) if 0 <= t + sign * d < n]
            if not any(self.labelled[k] for k in reach):
                continue
            x, y = self.x0, self.y0
            err = torch.zeros_like(x)
            remaining = torch.ones_like(x)
            at = t
            for k in reach:
                x, y, e = self._step(at, forward, x, y)
                err += e
                at = k
                fit = torch.exp(-err.clamp(max=1e3) / cfg.sigma)
                remaining[fit == 0] = 0
                if remaining.max() < cfg.min_remaining:
                    break
                if not self.labelled[k]:
                    continue
                self._vote(votes, remaining, k, t, x, y, fit, here)
                if remaining.max() < cfg.min_remaining:
                    break
        return votes

    def _answered(self, k: int) -> np.ndarray:
        """Where frame k's labels end a chain: spoken, less the named labels."""
        spoken = self.human[k] != VOID if self.spoken is None else self.spoken[k]
        return spoken & ~self.named[k]

    def _vote(self, votes, remaining, k, t, x, y, fit, here) -> None:
        grid = _grid(x, y)
        present = self._classes(k)
        carried = torch.zeros_like(votes)
        if present.numel():
            planes = (self._labels(k)[None] == present[:, None, None]).float()
            carried[present] = _sample(planes, grid, border=False)
        if self.named is not None and self.named[k].any():
            answered = self.cache.get(("answered", k), lambda: self._answered(k))
            cover = _sample(answered[None].float(), grid, border=False)[0]
        elif self.spoken is None:
            cover = carried.sum(0)
        else:
            answered = self.cache.get(("spoken", k), lambda: self.spoken[k])
            cover = _sample(answered[None].float(), grid, border=False)[0]
        trust = fit / abs(k - t) ** self.cfg.distance_power
        if here is not None:
            there = _sample(self._colour(k).float(), grid, border=False)
            trust = trust * torch.exp(-(there - here).abs().mean(0) / self.cfg.photo_sigma)
        weight = self._weight(k)
        if weight is not None:  # hvsa.method.fusion._vote: doubtful named pixels count less
            weight = _sample(weight[None], grid, border=False)[0]
            carried = carried * weight[None]
            cover = cover * weight
        votes += carried * (remaining * trust)[None]
        remaining *= 1 - cover.clamp(0, 1)

    def _weight(self, k: int) -> torch.Tensor | None:
        """Frame k's named_trust on the device, or None where its labels all count fully."""
        if self.trust is None or self._weighed.get(k) is False:
            return None
        if k not in self._weighed:
            weight = self.trust(k)
            self._weighed[k] = weight is not None
            if weight is None:
                return None
            return self.cache.get(("trust", k), lambda: weight)
        return self.cache.get(("trust", k), lambda: self.trust(k))


def _box(a: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)² window of (C,H,W) planes, edges mirrored as OpenCV's BORDER_REFLECT
    (``fedcba|abcdef``)."""
    r = radius
    a = torch.cat([a[:, :r].flip(1), a, a[:, -r:].flip(1)], 1)
    a = torch.cat([a[:, :, :r].flip(2), a, a[:, :, -r:].flip(2)], 2)
    a = F.avg_pool2d(a[None], (2 * r + 1, 1), stride=1)
    return F.avg_pool2d(a, (1, 2 * r + 1), stride=1)[0]


def guided_filter(guide: torch.Tensor, planes: torch.Tensor, radius: int, eps: float):
    """:func:`hvsa.method.fusion.guided_filter` of (C,H,W) planes by an (H,W) guide."""
    g = guide[None]
    mean_i = _box(g, radius)
    var_i = _box(g * g, radius) - mean_i * mean_i
    mean_p = _box(planes, radius)
    a = (_box(g * planes, radius) - mean_i * mean_p) / (var_i + eps)
    b = mean_p - a * mean_i
    return _box(a, radius) * g + _box(b, radius)


def fuse_frame(
    net_probs: torch.Tensor,
    votes: torch.Tensor,
    frame: np.ndarray,
    own: np.ndarray,
    cfg: FusionConfig,
    layer: np.ndarray | None = None,
    complete: np.ndarray | None = None,
    named: np.ndarray | None = None,
    trust: np.ndarray | None = None,
) -> torch.Tensor:
    """:func:`hvsa.method.fusion.fuse_frame` on ``votes``'s device: (C,H,W) fused
    probabilities of one frame, on that device."""
    device, size = votes.device, frame.shape[:2]
    net = F.interpolate(net_probs[None].to(device).float(), size=size, mode="bilinear",
                        align_corners=False)[0]  # fmt: skip
    fused = votes + cfg.network_weight * net + cfg.prior / len(votes)
    fused /= fused.sum(0, keepdim=True).clamp_min(1e-8)
    if cfg.guided_radius > 0:
        grey = cv2.cvtColor(np.asarray(frame), cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
        guide = torch.from_numpy(grey).to(device)
        fused = guided_filter(guide, fused, cfg.guided_radius, cfg.guided_eps).clamp(0, 1)
        fused /= fused.sum(0, keepdim=True).clamp_min(1e-8)
    if layer is not None and complete is not None and complete.any():
        # a frame with class layers is rare: the one implementation, on the host
        fused = torch.from_numpy(apply_layers(fused.cpu().numpy(), layer, complete)).to(device)
    mine = torch.from_numpy(np.asarray(own) != VOID).to(device)
    if mine.any():
        mine_labels = torch.from_numpy(np.asarray(own)).to(device).long()
        classes = torch.arange(len(fused), device=device)[:, None, None]
        hot = (mine_labels[None] == classes).float()
        if named is not None and cfg.region_odds is not None:
            # hvsa.method.fusion.weigh_named: the named class's belief times 1 + odds
            soft = mine & torch.from_numpy(np.asarray(named)).to(device)
            if soft.any():
                odds = cfg.region_odds
                if trust is not None:
                    odds = odds * torch.from_numpy(np.asarray(trust, np.float32)).to(device)
                weighted = fused * (1 + odds * hot)
                weighted /= weighted.sum(0, keepdim=True).clamp_min(1e-8)
                fused = torch.where(soft[None], weighted, fused)
                mine &= ~soft
        fused = torch.where(mine[None], hot, fused)
    return fused
