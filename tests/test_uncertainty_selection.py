import numpy as np
import pytest
import torch

from hvsa.method.selection import (
    coverage_kernel,
    coverage_scores,
    select,
    select_coverage,
    select_paper,
    select_spread,
)
from hvsa.method.uncertainty import (
    entropy,
    least_confidence,
    margin,
    per_segment_mean,
    pixel_uncertainty,
)


def _probs(*rows):
    return torch.tensor(rows, dtype=torch.float32).T[None, :, :, None]  # (1,C,P,1)


def test_measures_on_known_distributions():
    p = _probs([1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.6, 0.3, 0.1])
    ent = entropy(p)[0, :, 0]
    assert ent[0] == pytest.approx(0, abs=1e-6)
    assert ent[1] == pytest.approx(1, abs=1e-6)
    assert 0 < ent[2] < 1
    assert margin(p)[0, :, 0].tolist() == pytest.approx([0.0, 1.0, 0.7])
    assert least_confidence(p)[0, :, 0].tolist() == pytest.approx([0.0, 2 / 3, 0.4])


def test_all_measures_rank_the_uniform_pixel_most_uncertain():
    p = _probs([0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [0.7, 0.2, 0.1])
    for measure in ("entropy", "margin", "least_confidence"):
        assert int(pixel_uncertainty(p, measure)[0, :, 0].argmax()) == 1


def test_per_segment_mean_and_empty_segments():
    values = np.array([[1.0, 3.0], [5.0, 7.0]])
    segments = np.array([[0, 0], [1, 1]])
    out = per_segment_mean(values, segments, 3)
    assert out[:2].tolist() == [2.0, 6.0]
    assert np.isnan(out[2])


def test_paper_rule_keeps_uncertain_half_and_one_per_cluster():
    rng = np.random.default_rng(0)
    centres = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], np.float64)
    feats = np.concatenate([c + rng.normal(0, 0.05, (10, 2)) for c in centres])
    unc = rng.uniform(0, 1, 40)
    unc[:10] += 1  # cluster 0 is the most uncertain ...
    unc[20:30] += 1  # ... and so is cluster 2
    picked = select_paper(unc, feats, budget=2, keep_fraction=0.5, n_init=3, seed=0)
    assert len(picked) == 2
    top_half = set(np.argsort(-unc)[:20])
    assert set(picked) <= top_half
    clusters = {int(i) // 10 for i in picked}
    assert clusters == {0, 2}  # one sample from each uncertain cluster, not two from one


def test_selectors_return_distinct_indices_within_budget():
    rng = np.random.default_rng(1)
    unc, feats = rng.uniform(size=50), rng.normal(size=(50, 4))
    for strategy in ("paper", "random", "uncertainty", "diversity"):
        picked = select(strategy, unc, feats, 7, 0.5, 2, 0)
        assert len(picked) == 7
        assert len(set(picked.tolist())) == 7
        assert picked.min() >= 0 and picked.max() < 50
    assert set(select("uncertainty", unc, feats, 7, 0.5, 2, 0)) == set(np.argsort(-unc)[:7])


def test_identical_features_still_fill_the_budget():
    feats = np.zeros((10, 3))
    picked = select_paper(np.arange(10.0), feats, budget=3, keep_fraction=0.5, n_init=1, seed=0)
    assert len(set(picked.tolist())) == 3


def test_coverage_spreads_frames_over_a_uniformly_uncertain_video():
    # 40 frames, all equally uncertain: a batch of 4 must not sit in one stretch (what the
    # uncertainty-only selector does), but take roughly one frame per quarter
    mass = np.ones(40)
    frames = np.arange(40)
    picked = select_coverage(mass, frames, mass.copy(), budget=4, kernel=coverage_kernel(40, 6.0))
    assert len(set(picked.tolist())) == 4
    gaps = np.diff(np.sort(picked))
    assert gaps.min() >= 6


def test_coverage_prefers_the_uncertain_stretch_and_skips_covered_frames():
    mass = np.full(30, 0.1)
    mass[20:25] = 1.0  # one hard stretch
    frames = np.arange(30)
    picked = select_coverage(mass, frames, mass.copy(), budget=2, kernel=coverage_kernel(30, 3.0))
    assert 20 <= picked[0] < 25  # the first pick lands in the hard stretch ...
    assert abs(int(picked[1]) - int(picked[0])) > 1  # ... the second not beside the first


def test_coverage_counts_a_partial_sample_by_its_share_of_the_frame():
    # frame 0 has one small uncertain sample and one large one; the large one covers more
    mass = np.array([1.0, 9.0, 5.0])
    frames = np.array([0, 0, 1])
    frame_mass = np.array([10.0, 5.0])
    picked = select_coverage(mass, frames, frame_mass, budget=3, kernel=coverage_kernel(2, 1.0))
    assert picked[0] == 1
    assert sorted(picked.tolist()) == [0, 1, 2]
    assert (
        len(select_coverage(mass, frames, frame_mass, budget=0, kernel=coverage_kernel(2, 1.0)))
        == 0
    )


def test_coverage_per_click_prefers_the_cheaper_of_two_equal_covers():
    # two samples of one frame cover the same uncertainty; the second costs a tenth of the first
    mass = np.array([5.0, 5.0, 1.0])
    frames = np.array([0, 0, 1])
    frame_mass = np.array([10.0, 1.0])
    cost = np.array([20.0, 2.0, 50.0])
    assert (
        select_coverage(mass, frames, frame_mass, 1, kernel=coverage_kernel(2, 1.0))[0] == 0
    )  # a tie: first wins
    assert (
        select_coverage(mass, frames, frame_mass, 1, kernel=coverage_kernel(2, 1.0), cost=cost)[0]
        == 1
    )
    first = coverage_scores(mass, frames, frame_mass, kernel=coverage_kernel(2, 1.0))
    assert first[0] == first[1] > first[2]


def test_coverage_as_far_as_fusion_carries_spreads_a_first_batch_over_the_ends():
    """With the cover fusion gives a label (no reach), two frames of a 101-frame video whose
    first half is a little more uncertain leave no frame more than 35 from a label; a 6-frame
    reach puts both into the uncertain half and leaves the last 70 frames farther."""
    mass = np.ones(101)
    mass[:50] = 1.3
    frames = np.arange(101)

    def farthest(picked: np.ndarray) -> int:
        return int(np.abs(frames[:, None] - picked[None, :]).min(1).max())

    near = select_coverage(mass, frames, mass.copy(), 2, coverage_kernel(101, 6.0))
    far = select_coverage(mass, frames, mass.copy(), 2, coverage_kernel(101, None))
    assert farthest(near) > 60
    assert farthest(far) <= 35


def test_fusion_cover_is_the_share_of_the_vote_a_label_holds():
    k = coverage_kernel(30, None, distance_power=2.0, network_weight=0.01)
    assert k[5, 5] == 1.0
    assert k[0, 10] == pytest.approx(0.01 / (0.01 + 0.01))  # 1/10² beside 0.01: half
    assert k[0, 1] > k[0, 2] > k[0, 29] > 0
    assert np.allclose(k, k.T)


def test_spread_puts_a_first_batch_evenly_ends_included():
    """Nothing labelled: each of b equal stretches gets a frame in its middle."""
    frames = np.arange(101)
    assert sorted(select_spread(101, np.arange(0), frames, 2).tolist()) == [25, 75]
    assert sorted(select_spread(101, np.arange(0), frames, 4).tolist()) == [12, 37, 63, 88]


def test_spread_fills_the_widest_gaps_and_the_ends_first():
    frames = np.arange(101)
    # between labels at both ends, one frame goes to the middle
    rest = np.setdiff1d(frames, [0, 100])
    assert rest[select_spread(101, np.array([0, 100]), rest, 1)].tolist() == [50]
    # labels at 21 and 53: the 47 frames after 53 are the farthest, then the 21 before 21
    rest = np.setdiff1d(frames, [21, 53])
    assert rest[select_spread(101, np.array([21, 53]), rest, 1)].tolist() == [85]
    picked = sorted(rest[select_spread(101, np.array([21, 53]), rest, 2)].tolist())
    assert picked[0] < 21 and picked[1] > 53


def test_spread_takes_the_nearest_offered_frame_and_never_one_twice():
    offered = np.array([3, 4, 40, 41, 90])  # frames that can still be asked for
    picked = select_spread(101, np.arange(0), offered, 3)
    assert len(set(picked.tolist())) == 3
    assert set(offered[picked].tolist()) <= set(offered.tolist())
    assert len(select_spread(5, np.arange(0), np.arange(5), 9)) == 5  # more asked than offered
    assert len(select_spread(5, np.arange(0), np.arange(5), 0)) == 0
