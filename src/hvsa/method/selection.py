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
    the network ``network_weight``): ``v / (v + network_weight)``. Why: a label counts as far
    as fusion carries it (half its frame at 14 frames with the default weights, a tenth at 45),
    so a first batch is spread over the whole video, ends included, instead of covering two
    uncertain stretches and leaving a third of the video to a network that knows nothing yet.
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
