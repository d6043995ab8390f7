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

A label *named* for a whole region with one click (a superpixel labelled as its dominant class)
is not true of every pixel it covers: 9-14 % of a fill's pixels are another class. In its own
frame such a pixel is evidence, not truth: the named class's belief is multiplied by
``1 + region_odds`` and the pixel keeps whatever then wins, so a network and carried labels that
agree on another class can still overrule it. Carried to other frames it votes as any label
does and, as a drawn label, ends the chain (farther labels are shadowed); with
``named_shadow`` off it is one noisy vote of several: the chain walks on and the farther labels
it meets vote too, so single fills' errors average out along it.

Which of a fill's pixels are the wrong ones, the colour tells: a superpixel straddles a border
where two classes meet in similar colours, and its minority pixels are the ones whose colour
is farthest from the region's own (round 7 of a superpixel run: on the generated video 77 % of
the wrong named pixels lay in the tenth farthest from their region's median colour; on CamVid
0016E5_15hz 26 %, a third of that tenth named wrong against an eighth of all).
With ``named_colour_sigma`` each named pixel counts ``exp(-d / named_colour_sigma)``
(:func:`named_trust`): that much of its odds in its own frame, that much of its vote when
carried, and that much of the chain it ends, the rest left to farther labels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from hvsa.config import FusionConfig
from hvsa.data.spill import DiskTensor, like
from hvsa.data.video import VOID
from hvsa.method import fusion_device as on_device
from hvsa.method.class_layers import apply_layers
from hvsa.method.motion import Flow
from hvsa.method.propagate import pixel_grid, step


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


def _present(labels: np.ndarray) -> np.ndarray:
    """The classes that occur in ``labels``, void left out."""
    present = np.unique(labels)
    return present[present != VOID]


def _carry(
    labels: np.ndarray,
    num_classes: int,
    x: np.ndarray,
    y: np.ndarray,
    present: np.ndarray | None = None,
) -> np.ndarray:
    """(C,H,W) one-hot of ``labels`` pulled to (x, y); only classes present are resampled.

    A partly labelled frame (superpixels, rectangles) holds a few classes: resampling only
    those halves the time of fusion, which for partial labels walks every chain to its end.
    ``present`` (from :func:`_present`) saves looking them up again.
    """
    out = np.zeros((num_classes, *x.shape), np.float32)
    present = _present(labels) if present is None else present
    if present.size:
        planes = (labels[None] == present[:, None, None]).astype(np.float32)
        out[present] = _pull(planes, x, y)
    return out


def named_trust(
    colours: np.ndarray, named: np.ndarray, regions: np.ndarray, sigma: float
) -> np.ndarray:
    """(H,W) float32: how much each of a frame's labels counts — ``exp(-d / sigma)`` for a
    named pixel, ``d`` the mean absolute difference of its RGB ``colours`` (H,W,3) from the
    median colour of the named pixels of its region (``regions`` (H,W) int, e.g. the ledger
    event that gave them), 1 for every other pixel.

    Every region's pixels should share an id (a run gives each hand-in its ledger event);
    named pixels of one id share one median. Why the median: the one click names the region's
    dominant class, and the dominant class's
    pixels set the median colour; the pixels far from it are the minority the name is wrong
    for. Why not drop them: most of them are still named right (on CamVid 0016E5_15hz 61 % of
    those 80+ levels away), so they count less rather than not at all.
    """
    trust = np.ones(named.shape, np.float32)
    if not named.any():
        return trust
    ids = regions[named]
    rgb = colours[named].astype(np.float32)
    order = np.argsort(ids, kind="stable")
    d = np.empty(len(ids), np.float32)
    for group in np.split(order, np.flatnonzero(np.diff(ids[order])) + 1):
        d[group] = np.abs(rgb[group] - np.median(rgb[group], 0)).mean(1)
    trust[named] = np.exp(-d / sigma)
    return trust


def carried_votes(
    human: np.ndarray,
    labelled: np.ndarray,
    flow: Flow,
    t: int,
    num_classes: int,
    cfg: FusionConfig,
    frames: np.ndarray | None = None,
    spoken: np.ndarray | None = None,
    memo: dict[int, _Labelled] | None = None,
    named: np.ndarray | None = None,
    regions: np.ndarray | None = None,
) -> np.ndarray:
    """(C,H,W) votes of the human labels of other frames for frame ``t``.

    In each direction the chain walks at most :func:`carry_limit` frames, or until the labelled
    frames it met answer every pixel or its chain breaks; a pixel takes its vote from the
    nearest labelled frame that covers it (``remaining`` is what nearer frames left open),
    so a fully labelled keyframe shadows everything behind it, as in propagate-K. ``spoken``
    (N,H,W) marks where a human answered, void included: a pixel the human called void covers
    too, else every frame's few void pixels kept each chain walking the whole window.
    ``memo`` keeps what is looked up per labelled frame across calls (:func:`fuse` passes one),
    keyed by frame index: share one only between calls on the same ``human``, ``spoken``,
    ``named``, ``regions``, ``frames``, ``cfg.sparse_share``, ``cfg.named_shadow`` and
    ``cfg.named_colour_sigma``. ``named`` (N,H,W) bool: labels
    named for a whole region, which with ``cfg.named_shadow`` off vote but cover nothing (the
    chain walks on past them; see the module's docstring); ``regions`` (N,H,W) int the region
    each label was named for, which with ``cfg.named_colour_sigma`` weighs each named pixel
    (:func:`named_trust`).
    """
    past = None if named is None or cfg.named_shadow else named
    trust = _trust_of(named, regions, frames, cfg)
    votes = np.zeros((num_classes, *human.shape[1:]), np.float32)
    n = len(human)
    for forward in (False, True):
        sign = 1 if forward else -1
        reach = [t + sign * d for d in range(1, carry_limit(cfg, n) + 1) if 0 <= t + sign * d < n]
        if not any(labelled[k] for k in reach):
            continue
        x, y = pixel_grid(human.shape[1:])
        err = np.zeros(x.shape, np.float32)
        remaining = np.ones(x.shape, np.float32)
        points = None  # the frame's pixels in place; else the flat pixels still walked
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
            if labelled[k]:
                facts = _labelled(human, spoken, k, cfg.sparse_share, memo, past, trust)
                pixels = _reaching(facts, x, y, remaining, cfg.sparse_share)
                _vote(votes, remaining, human, spoken, frames, k, t, x, y, fit, cfg, pixels, facts,
                      points=points)  # fmt: skip
                if remaining.max() < cfg.min_remaining:
                    break
            x, y, err, remaining, points = _compact(x, y, err, remaining, points)
    return votes


_COMPACT_BELOW = 0.5  # walk only the live points once fewer than this share of those walked live


def _compact(
    x: np.ndarray,
    y: np.ndarray,
    err: np.ndarray,
    remaining: np.ndarray,
    points: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The chain's points with the dead ones dropped, once they are most of it.

    A point whose ``remaining`` is 0 (it left the frame, its chain broke, or nearer labels
    answered it) never votes again, yet stepping it costs as much as a live one: where the
    camera moves forward, the chains walking forward lose half their points within 20 frames
    at 15 Hz and 90 % within 60, while every point is stepped, resampled and weighed to the
    chain's end. The live points are packed in rows of ``_REMAP_COLS`` (cv2.remap takes maps
    of under 32767 rows), the last row padded with dead points far outside the frame;
    ``points`` (flat pixel indices of frame t, None = every pixel in place) says whose chain
    each is. Every live point keeps its coordinates, error and share, so the votes are the
    same to the bit.
    """
    alive = np.flatnonzero(remaining.reshape(-1) > 0)
    walked = remaining.size if points is None else points.size
    if alive.size >= _COMPACT_BELOW * walked:
        return x, y, err, remaining, points

    def pack(a: np.ndarray, fill: float) -> np.ndarray:
        return _in_rows(a.reshape(-1)[alive], fill)

    kept = alive if points is None else points[alive]
    return pack(x, _FAR), pack(y, _FAR), pack(err, np.inf), pack(remaining, 0.0), kept


def carry_limit(cfg: FusionConfig, frames: int) -> int:
    """How far a chain walks at most: ``cfg.window``, or with no window the distance at which
    even an unbroken chain's vote (``1 / d ** distance_power``) is under 1 % of the network's.

    Why no fixed window: a frame farther than it from every label was left to the network,
    which is worse than plain propagation of the same labels wherever the network is weak (the
    first rounds). Why a limit at all: labels in pieces never answer every pixel, so chains
    would walk to the ends of the video, and fusion would grow with the square of its length;
    this keeps it linear (142 frames each way with the default weights).
    """
    if cfg.window is not None:
        return cfg.window
    if cfg.distance_power <= 0:
        return frames
    return min(frames, math.ceil((100 / cfg.network_weight) ** (1 / cfg.distance_power)))


_REMAP_COLS = 1024  # row length of packed and picked points as remap maps (cv2: < 32767 rows)
_FAR = -1e4  # a coordinate no bilinear sample of the frame reaches: padding there reads 0


def _in_rows(values: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """(P,) values as rows of ``_REMAP_COLS`` (cv2.remap takes maps of under 32767 rows),
    the last row padded with ``fill``: a set of chosen points as a map to remap at."""
    rows = max(1, -(-values.size // _REMAP_COLS))
    out = np.full(rows * _REMAP_COLS, fill, values.dtype)
    out[: values.size] = values
    return out.reshape(rows, _REMAP_COLS)


class _Labelled(NamedTuple):
    """What every chain that meets labelled frame k needs of it, looked up once."""

    present: np.ndarray  # classes in its labels
    grown: np.ndarray | None  # where it was answered, grown by a pixel; None = too much for sparse
    # where its labels end a chain when named labels are walked past; None = where it was
    # answered, as for drawn labels
    ends: np.ndarray | None = None
    # how much each of its labels counts (named_trust); None = all of them fully
    trust: np.ndarray | None = None


def _trust_of(named, regions, frames, cfg: FusionConfig):
    """Frame k → its :func:`named_trust`, or None where its labels all count fully; None when
    no pixel is weighed (no named labels, no regions or colours, or no ``named_colour_sigma``)."""
    sigma = cfg.named_colour_sigma
    if named is None or regions is None or frames is None or sigma is None:
        return None

    def of(k: int) -> np.ndarray | None:
        return named_trust(frames[k], named[k], regions[k], sigma) if named[k].any() else None

    return of


def _labelled(
    human: np.ndarray,
    spoken: np.ndarray | None,
    k: int,
    share: float,
    memo: dict[int, _Labelled] | None,
    past: np.ndarray | None = None,
    trust=None,
) -> _Labelled:
    """Frame ``k``'s :class:`_Labelled`, from ``memo`` when it holds it; ``past`` (N,H,W) bool
    the named labels that chains walk past, ``trust`` frame → :func:`named_trust` or None."""
    if memo is not None and k in memo:
        return memo[k]
    region = human[k] != VOID if spoken is None else spoken[k] | (human[k] != VOID)
    grown = None
    if share > 0 and region.mean() <= share:  # a frame labelled more fully is reached widely
        grown = cv2.dilate(region.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    ends = None
    if past is not None and past[k].any():
        ends = (human[k] != VOID if spoken is None else spoken[k]) & ~past[k]
    facts = _Labelled(_present(human[k]), grown, ends, None if trust is None else trust(k))
    if memo is not None:
        memo[k] = facts
    return facts


def _reaching(
    facts: _Labelled, x: np.ndarray, y: np.ndarray, remaining: np.ndarray, share: float
) -> np.ndarray | None:
    """Flat indices of the pixels whose chain can pick up a vote from frame k, or None.

    A bilinear sample at (x, y) reads the four pixels around it, all within one pixel of
    (round(x), round(y)); so the answered region grown by one pixel, looked up at the rounded
    position, holds every pixel with a non-zero vote. Pixels already answered (``remaining`` 0)
    get none. None (take the dense path) when more than ``share`` of the pixels could vote:
    there the gather and scatter of a sparse path would cost more than they save.
    """
    if facts.grown is None:
        return None
    h, w = facts.grown.shape
    inside = (x > -1) & (x < w) & (y > -1) & (y < h)  # False for NaN, too
    xi = np.rint(np.clip(np.where(inside, x, 0), 0, w - 1)).astype(np.intp)
    yi = np.rint(np.clip(np.where(inside, y, 0), 0, h - 1)).astype(np.intp)
    hit = facts.grown[yi, xi] & inside & (remaining > 0)
    at = np.flatnonzero(hit)
    return None if at.size > share * hit.size else at


def _vote(
    votes, remaining, human, spoken, frames, k, t, x, y, fit, cfg, at, facts, points=None
) -> None:
    """Add frame ``k``'s carried labels to ``votes`` and shade ``remaining`` (in place).

    ``at`` (flat pixel indices, from :func:`_reaching`) restricts the work to those pixels,
    with the same numbers: with labels in pieces (rectangles, superpixels) in every frame, each
    chain walks its whole window and meets a labelled frame at every step, but only a few of
    its pixels land on a label, and resampling and weighting those alone is what makes fusion
    of partial labels cheap. ``at=None`` works on every pixel. Where ``facts.ends`` is given,
    only its pixels shade ``remaining`` (named labels walked past vote but end no chain).
    Where ``facts.trust`` is given, its weight, sampled at the same points, scales both the
    vote and the shading (a doubtful named pixel votes less and ends less of the chain);
    sampled apart from the labels, so within a pixel of a weighed named pixel a drawn label's
    vote is scaled by the blend of the two weights. ``points`` (from :func:`_compact`): the
    flat pixels of frame t whose chains ``x``, ``y``, ``fit`` and ``remaining`` hold, packed
    in rows; None = every pixel of frame t in place.
    """
    if at is not None and at.size == 0:
        return
    if at is None:

        def pick(a: np.ndarray, fill: float = 0.0) -> np.ndarray:
            return a

        mine = points  # the pixels of frame t that the points start from; None = all in place
    else:
        # the chosen pixels as rows, the last padded with points far outside the frame

        def pick(a: np.ndarray, fill: float = 0.0) -> np.ndarray:
            return _in_rows(a.reshape(-1)[at], fill)

        mine = at if points is None else points[at]
    here = None
    if frames is not None and cfg.photo_sigma:
        if mine is None:
            here = frames[t].transpose(2, 0, 1)
        else:  # laid out as the points are (packed by _compact, or picked)
            colours = frames[t].reshape(-1, frames.shape[-1])[mine]
            here = np.stack([_in_rows(colours[:, ch]) for ch in range(colours.shape[1])])
    xs, ys = pick(x, _FAR), pick(y, _FAR)  # packed points come padded with _FAR already
    carried = _carry(human[k], len(votes), xs, ys, facts.present)
    if facts.ends is not None:
        cover = _pull(facts.ends[None] * 1.0, xs, ys)[0]
    elif spoken is None:
        cover = carried.sum(0)
    else:
        cover = _pull(spoken[k, None] * 1.0, xs, ys)[0]
    if facts.trust is not None:  # a doubtful named pixel: less of a vote, less of the chain ended
        weight = _pull(facts.trust[None], xs, ys)[0]
        carried *= weight[None]
        cover = cover * weight
    trust = pick(fit) / abs(k - t) ** cfg.distance_power
    if here is not None:
        there = _pull(frames[k].transpose(2, 0, 1).astype(np.float32), xs, ys)
        trust *= np.exp(-np.abs(there - here).mean(0) / cfg.photo_sigma)
    add = carried * (pick(remaining) * trust)[None]
    keep = 1 - np.clip(cover, 0, 1)
    if at is None:
        remaining *= keep  # padding (remaining 0) stays 0
        if mine is None:
            votes += add
        else:
            votes.reshape(len(votes), -1)[:, mine] += add.reshape(len(votes), -1)[:, : mine.size]
    else:
        votes.reshape(len(votes), -1)[:, mine] += add.reshape(len(votes), -1)[:, : at.size]
        remaining.reshape(-1)[at] *= keep.reshape(-1)[: at.size]


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
    layer: np.ndarray | None = None,
    complete: np.ndarray | None = None,
    named: np.ndarray | None = None,
    trust: np.ndarray | None = None,
) -> np.ndarray:
    """(C,H,W) fused probabilities of one frame from the network's (C,h,w) softmax.

    ``own`` is the frame's own human labels (H,W), which are certain, except where ``named``
    (H,W) bool marks a label named for a whole region (:func:`weigh_named`; its odds times
    ``trust`` (H,W), :func:`named_trust`, where given); ``layer`` (H,W)
    and ``complete`` (C,) bool are its class layers
    (:func:`hvsa.method.class_layers.apply_layers`).
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
    if layer is not None and complete is not None:
        fused = apply_layers(fused, layer, complete)
    mine = own != VOID
    if named is not None and cfg.region_odds is not None:
        soft = mine & named
        if soft.any():
            odds = cfg.region_odds if trust is None else cfg.region_odds * trust[soft]
            fused[:, soft] = weigh_named(fused[:, soft], own[soft], odds)
            mine &= ~soft
    if mine.any():
        fused[:, mine] = one_hot(own, len(fused))[:, mine]
    return fused


def weigh_named(belief: np.ndarray, named: np.ndarray, odds: float | np.ndarray) -> np.ndarray:
    """(C,P) belief of P pixels given that a person named their region's class ``named`` (P,);
    ``odds`` one for all or (P,) one each.

    Bayes with the naming as evidence: the named class's belief times ``1 + odds``, then
    normalised. Why not truth: the one click names the region's dominant class, so its other
    pixels are handed in wrong; a pixel where the network and the carried labels hold another
    class more than ``1 + odds`` times as likely as the named one keeps that class. Why not a
    weaker vote: the naming is still the best evidence where the belief is unsure (the belief
    of a pixel no carried label reaches is the network's, flattened by the prior).
    """
    weighted = belief * (1 + odds * (named[None] == np.arange(len(belief))[:, None]))
    return weighted / weighted.sum(0, keepdims=True).clip(1e-8)


def reach(carried: Iterable[int], own: Iterable[int], frames: int, cfg: FusionConfig) -> np.ndarray:
    """(N,) bool: the frames whose fused labels a change can move — within
    :func:`carry_limit` of a frame whose human labels changed (``carried``: its labels are
    carried that far and no farther), and the frames whose class layers changed (``own``: a
    layer acts on its own frame only). With the network and the fusion settings unchanged,
    every other frame's labels stay as they were."""
    out = np.zeros(frames, bool)
    limit = carry_limit(cfg, frames)
    for k in carried:
        out[max(0, k - limit) : k + limit + 1] = True
    out[list(own)] = True
    return out


def fuse(
    net_probs: torch.Tensor,
    human: np.ndarray,
    frames: np.ndarray,
    flow: Flow,
    cfg: FusionConfig,
    spoken: np.ndarray | None = None,
    layers: np.ndarray | None = None,
    complete: np.ndarray | None = None,
    only: np.ndarray | None = None,
    previous: tuple[np.ndarray, torch.Tensor] | None = None,
    device: torch.device | None = None,
    named: np.ndarray | None = None,
    regions: np.ndarray | None = None,
    label_probs: torch.Tensor | None = None,
) -> tuple[np.ndarray, torch.Tensor]:
    """Labels (N,H,W) uint8 for the whole video, and fused probabilities at the network's size.

    ``net_probs`` is the network's (N,C,h,w) softmax, ``human`` (N,H,W) with 255 where no human
    spoke; ``spoken`` (N,H,W) bool where a human answered, void included (see
    :func:`carried_votes`); ``layers`` (N,H,W) and ``complete`` (N,C) bool the class layers,
    which act on their own frame only; ``named`` (N,H,W) bool the human labels named for a whole
    region (:func:`weigh_named`), ``regions`` (N,H,W) int the region each was named for
    (:func:`named_trust`). The returned probabilities (N,C,h,w), float16 as the
    network's are, replace the network's for selection.

    Each frame is fused on its own from the frames its chains reach (at most
    :func:`carry_limit` away), so the video can be fused in windows: ``only`` (N,) bool fuses
    those frames and takes every other frame's labels and probabilities from ``previous``
    (what an earlier call returned; :func:`reach` says which frames a change can move).

    ``device``: fuse each frame there (:mod:`hvsa.method.fusion_device`, the same rule with
    torch kernels; a GPU's gain) instead of with numpy and OpenCV on the host.

    ``label_probs`` (N,C,h,w): another network vote for the labels alone (the mean of two
    networks', ``fusion.vote_for: labels``): each frame's carried votes, the costly part, are
    gathered once and fused with each vote; the probabilities returned are ``net_probs``'s.
    """
    n, num_classes, h, w = net_probs.shape
    labelled = (human != VOID).reshape(n, -1).any(1)
    memo: dict[int, _Labelled] = {}
    if only is None:
        todo = range(n)
        labels = np.empty(human.shape, np.uint8)
        small = like(net_probs, (n, num_classes, h, w), torch.float16)
    else:
        if previous is None:
            raise ValueError("fusing only some frames needs the previous labels and belief")
        todo = np.flatnonzero(only).tolist()
        labels, small = previous[0].copy(), previous[1].clone()
    walker = None
    trust = _trust_of(named, regions, frames, cfg)
    if device is not None:
        walker = on_device.ChainWalker(human, flow, cfg, carry_limit(cfg, n), num_classes, device,
                                       frames, spoken, named=named, trust=trust)  # fmt: skip
    for t in tqdm(todo, desc="fuse labels", leave=False):
        layer = None if layers is None else layers[t]
        given = None if complete is None else complete[t]
        mark = None if named is None else named[t]
        weight = None if trust is None else trust(t)
        if walker is None:
            votes = carried_votes(human, labelled, flow, t, num_classes, cfg, frames, spoken, memo,
                                  named, regions)  # fmt: skip
            kernel = fuse_frame
        else:
            votes = walker.votes(t)
            kernel = on_device.fuse_frame
        rest = (votes, frames[t], human[t], cfg, layer, given, mark, weight)
        fused = torch.as_tensor(kernel(net_probs[t], *rest))
        chosen = fused if label_probs is None else torch.as_tensor(kernel(label_probs[t], *rest))
        labels[t] = chosen.argmax(0).cpu().numpy()
        small[t] = F.interpolate(fused[None], size=(h, w), mode="area")[0].cpu()
    if isinstance(small, DiskTensor):
        small.flush()
    return labels, small
