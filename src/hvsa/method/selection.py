"""Choosing which samples a human labels this round.

The paper's rule (Qiao et al., WACV 2023): keep the most uncertain share of the candidates,
cluster them by the network's features into ``b`` clusters, and send the sample nearest each
centroid. Uncertainty finds where the network is wrong; clustering spreads the budget over
different-looking content so that ``b`` labels do not all teach the same thing.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans


def _nearest_to_centroids(features: np.ndarray, budget: int, n_init: int, seed: int) -> np.ndarray:
    """Indices (into ``features``) of the member nearest each of ``budget`` k-means centroids."""
    if len(features) <= budget:
        return np.arange(len(features))
    km = KMeans(n_clusters=budget, n_init=n_init, random_state=seed).fit(features)
    chosen = []
    for c in range(budget):
        members = np.flatnonzero(km.labels_ == c)
        if members.size == 0:
            continue
        d = ((features[members] - km.cluster_centers_[c]) ** 2).sum(1)
        chosen.append(int(members[int(d.argmin())]))
    picked = list(dict.fromkeys(chosen))
    # identical features can leave clusters empty: top up in the caller's order of preference
    for i in range(len(features)):
        if len(picked) >= budget:
            break
        if i not in picked:
            picked.append(i)
    return np.asarray(picked, dtype=int)


def select_paper(
    uncertainty: np.ndarray,
    features: np.ndarray,
    budget: int,
    keep_fraction: float,
    n_init: int,
    seed: int,
) -> np.ndarray:
    """Most uncertain ``keep_fraction`` of candidates, then one per feature cluster."""
    keep = max(budget, int(np.ceil(len(uncertainty) * keep_fraction)))
    top = np.argsort(-uncertainty, kind="stable")[:keep]
    picked = _nearest_to_centroids(features[top], budget, n_init, seed)
    return top[picked]


def select_uncertainty(uncertainty: np.ndarray, budget: int) -> np.ndarray:
    """The ``budget`` most uncertain candidates."""
    return np.argsort(-uncertainty, kind="stable")[:budget]


def select_diversity(features: np.ndarray, budget: int, n_init: int, seed: int) -> np.ndarray:
    """One candidate per feature cluster over all candidates, ignoring uncertainty."""
    return _nearest_to_centroids(features, budget, n_init, seed)


def select_random(n: int, budget: int, seed: int) -> np.ndarray:
    """``budget`` candidates uniformly at random (the baseline every selector must beat)."""
    return np.random.default_rng(seed).choice(n, size=min(budget, n), replace=False)


def select(
    strategy: str,
    uncertainty: np.ndarray,
    features: np.ndarray,
    budget: int,
    keep_fraction: float,
    n_init: int,
    seed: int,
) -> np.ndarray:
    """Dispatch to a selector; returns indices into the candidate arrays."""
    if strategy == "paper":
        return select_paper(uncertainty, features, budget, keep_fraction, n_init, seed)
    if strategy == "uncertainty":
        return select_uncertainty(uncertainty, budget)
    if strategy == "diversity":
        return select_diversity(features, budget, n_init, seed)
    return select_random(len(uncertainty), budget, seed)


def coverage_kernel(
    n_frames: int, reach: float | None, distance_power: float = 2.0, network_weight: float = 0.005
) -> np.ndarray:
    """kernel[f, t]: share of frame t's uncertainty that a full label in frame f covers.

    With a ``reach``, ``exp(-|t - f| / reach)``. With none, the share of frame t's fused vote
    that a label ``d`` frames away would hold beside the network's, as the label generator
    weighs them (:mod:`hvsa.method.fusion`: an unbroken chain votes ``1 / d ** distance_power``,
    the network ``network_weight``): ``v / (v + network_weight)``, so that a label counts as far
    as fusion carries it (half its frame 14 frames away at power 2, 200 at power 1). Measured
    on 0016E5_15hz it spread the first frames wider but labelled 1.4 points worse in round 2
    than a reach of 6 (``benchmarks/RESULTS.md``, "Where the first frames go").
    """
    d = np.abs(np.arange(n_frames)[:, None] - np.arange(n_frames)[None, :]).astype(float)
    if reach is not None:
        return np.exp(-d / reach)
    vote = np.maximum(d, 1.0) ** -float(distance_power)  # d = 0 is the label's own frame: 1
    return np.where(d > 0, vote / (vote + network_weight), 1.0)


def _coverage_share(mass: np.ndarray, frames: np.ndarray, frame_mass: np.ndarray) -> np.ndarray:
    """Share of its own frame's uncertainty that each candidate holds."""
    total = frame_mass[frames]
    return np.divide(mass, total, out=np.zeros(len(mass)), where=total > 0)


def coverage_scores(
    mass: np.ndarray, frames: np.ndarray, frame_mass: np.ndarray, kernel: np.ndarray
) -> np.ndarray:
    """Uncertainty each candidate's label would cover if it were picked first (``kernel``
    from :func:`coverage_kernel`)."""
    covered_from = kernel @ frame_mass.astype(float)
    return _coverage_share(mass, frames, frame_mass) * covered_from[frames]


def select_coverage(
    mass: np.ndarray,
    frames: np.ndarray,
    frame_mass: np.ndarray,
    budget: int,
    kernel: np.ndarray,
    cost: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy batch that covers the most uncertainty of the whole video, time-aware.

    Why: the fused labels carry every human label along the flow to the frames around it, so a
    sample is worth its frame's uncertainty *and* a decaying share of its neighbours'. Picking the
    top uncertain samples at once puts a batch into one hard stretch (measured: the
    uncertainty-only selector is the worst on frames); picking by features ignores time. Here each
    pick is the sample whose label would cover most remaining uncertainty, counting frame ``t``
    from a label in frame ``f`` with weight ``kernel[f, t]`` (:func:`coverage_kernel`), and
    what it covers is then taken as covered for the rest of the batch (facility-location
    greedy).

    ``mass``: each candidate's uncertainty summed over its pixels; ``frames``: its frame;
    ``frame_mass``: (n_frames,) uncertainty summed over each frame's unlabelled pixels (the
    candidates' masses, or more).
    A candidate covers its share ``mass / frame_mass[frame]`` of its own frame's uncertainty, and
    that share of the neighbours'. With ``cost`` (expected clicks per candidate), each pick is
    the best cover *per click*: samples of one granularity can differ tenfold in price (a
    rectangle full of borders against one of sky), and the most uncertain are the dearest.
    """
    n = len(mass)
    budget = min(budget, n)
    if budget <= 0:
        return np.arange(0)
    share = _coverage_share(mass, frames, frame_mass)
    price = np.ones(n) if cost is None else np.maximum(np.asarray(cost, float), 1e-9)
    remaining = frame_mass.astype(float).copy()
    open_ = np.ones(n, bool)
    picked: list[int] = []
    for _ in range(budget):
        covered_from = kernel @ remaining  # uncertainty a full label in frame f would cover
        score = np.where(open_, share * covered_from[frames] / price, -np.inf)
        i = int(np.argmax(score))
        picked.append(i)
        open_[i] = False
        remaining *= 1.0 - share[i] * kernel[frames[i]]
    return np.asarray(picked, dtype=int)


def _gap_places(lo: int, hi: int, n_frames: int, m: int) -> np.ndarray:
    """``m`` frames in the unlabelled stretch ``lo..hi`` (inclusive) that bring its frames
    nearest a label, given labels just outside it (at ``lo - 1`` and ``hi + 1`` where those are
    frames of the video): evenly spaced between two labels; at an end of the video, the frame
    nearest the end half a step in, since nothing beyond it needs the label."""
    left, right = lo > 0, hi < n_frames - 1
    a, b = lo - 1, hi + 1  # the labels around (or just past the ends)
    i = np.arange(1, m + 1, dtype=float)
    if left and right:
        x = a + i * (b - a) / (m + 1)
    elif right:  # the start of the video: frames 0..hi, a label at b
        x = b - (b + 0.5) * (2 * (m - i + 1)) / (2 * m + 1)
    elif left:  # the end of the video
        x = a + (n_frames - 1 - a + 0.5) * (2 * i) / (2 * m + 1)
    else:  # nothing labelled: each of m equal stretches gets a label in its middle
        x = (2 * i - 1) * n_frames / (2 * m) - 0.5
    return np.unique(np.clip(np.rint(x), lo, hi).astype(int))


def _gap_cost(lo: int, hi: int, n_frames: int, places: np.ndarray) -> float:
    """Summed distance of the frames ``lo..hi`` to their nearest label (``places``, and the
    labels just outside the stretch)."""
    at = [*places.tolist(), *([lo - 1] if lo > 0 else []), *([hi + 1] if hi < n_frames - 1 else [])]
    t = np.arange(lo, hi + 1)
    if not at:  # no label anywhere: every frame counts as farther than the video is long
        return float(n_frames * len(t))
    return float(np.abs(t[:, None] - np.asarray(at)[None, :]).min(1).sum())


def select_spread(
    n_frames: int, labelled: np.ndarray, candidates: np.ndarray, budget: int
) -> np.ndarray:
    """A batch of frames that brings every frame of the video nearest a labelled one: the
    ``budget`` frames that, with the frames already ``labelled``, minimise the mean distance
    (in frames) of every frame to its nearest label — the 1-D k-median, ends of the video
    included. Returns indices into ``candidates`` (frame indices).

    Why try it: before the network has learned anything of this video, a frame's label is as
    good as the nearest human label carried to it along the flow, and a carried label degrades
    with every frame it travels (``../shared/FINDINGS.md``: propagate-K falls from 94 % at K = 2
    to 69 % at K = 25), while uncertainty-driven picks may leave a stretch far from any label.
    Measured on 0016E5_15hz, the coverage selector still labelled 0.6-1.1 points better in
    rounds 1-3 (``benchmarks/RESULTS.md``, "Where the first frames go"), so it is off by default.
    The labelled frames cut the video into unlabelled stretches; each stretch's best frames for
    ``m`` labels are evenly spaced (half a step from an end of the video), and the batch is
    shared among stretches greedily by how much each next label shortens the distances (exact
    for this convex cost).
    """
    budget = min(budget, len(candidates))
    if budget <= 0:
        return np.arange(0)
    taken = np.zeros(n_frames, bool)
    taken[np.asarray(labelled, int)] = True
    cut = np.flatnonzero(np.diff(np.r_[True, taken, True].astype(np.int8)))  # stretch bounds
    stretches = [(int(lo), int(hi) - 1) for lo, hi in zip(cut[::2], cut[1::2], strict=True)]
    given = [0] * len(stretches)
    cost = [_gap_cost(lo, hi, n_frames, np.arange(0)) for lo, hi in stretches]
    for _ in range(budget):
        best, gain, then = -1, 0.0, 0.0
        for s, (lo, hi) in enumerate(stretches):
            if given[s] >= hi - lo + 1:
                continue
            c = _gap_cost(lo, hi, n_frames, _gap_places(lo, hi, n_frames, given[s] + 1))
            if cost[s] - c > gain:
                best, gain, then = s, cost[s] - c, c
        if best < 0:
            break
        given[best] += 1
        cost[best] = then
    wanted = [
        p
        for s, (lo, hi) in enumerate(stretches)
        if given[s]
        for p in _gap_places(lo, hi, n_frames, given[s]).tolist()
    ]
    # the candidate nearest each wanted frame (a frame may not be offered: partly labelled)
    picked: list[int] = []
    order = np.asarray(candidates)
    for p in wanted:
        d = np.abs(order - p).astype(float)
        d[picked] = np.inf
        picked.append(int(np.argmin(d)))
    return np.asarray(picked[:budget], dtype=int)
