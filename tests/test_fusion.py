import numpy as np
import pytest
import torch

from hvsa.config import load_config
from hvsa.data.synth import CLASSES, generate
from hvsa.data.video import VOID
from hvsa.method.fusion import (
    _carry,
    _pull,
    carried_votes,
    fuse,
    fuse_frame,
    guided_filter,
    named_trust,
    one_hot,
    reach,
    weigh_named,
)
from hvsa.method.metrics import miou
from hvsa.method.motion import compute_flow
from tests.conftest import REPO, shifting_video

CFG = load_config(REPO / "params.yaml")


def _uniform(n, c, h, w):
    return torch.full((n, c, h, w), 1.0 / c)


def test_one_hot_leaves_void_empty():
    labels = np.array([[0, 1], [VOID, 1]], np.uint8)
    oh = one_hot(labels, 2)
    assert oh.shape == (2, 2, 2)
    assert oh[:, 1, 0].sum() == 0 and oh[0, 0, 0] == 1 and oh[1, 1, 1] == 1


def test_guided_filter_keeps_a_constant_and_a_border_on_a_frame_edge():
    guide = np.zeros((20, 20), np.float32)
    guide[:, 10:] = 1.0
    plane = np.zeros((1, 20, 20), np.float32)
    plane[0, :, 10:] = 1.0  # a label border on the image edge stays sharp
    flat = guided_filter(guide, np.ones((1, 20, 20), np.float32), 2, 1e-3)
    assert np.allclose(flat, 1.0, atol=1e-4)
    kept = guided_filter(guide, plane, 2, 1e-3)[0]
    assert kept[10, 9] < 0.02 and kept[10, 10] > 0.98
    # the same border where the frame is flat is smoothed like a box filter would
    smoothed = guided_filter(np.zeros_like(guide), plane, 2, 1e-3)[0]
    assert 0.2 < smoothed[10, 9] < 0.8


def test_votes_come_from_the_nearest_labelled_frame_in_each_direction():
    frames, labels = shifting_video(frames=5)
    flow = compute_flow(frames, CFG.flow)
    human = np.full_like(labels, VOID)
    human[[0, 4]] = labels[[0, 4]]
    labelled = np.array([True, False, False, False, True])
    votes = carried_votes(human, labelled, flow, 1, 2, CFG.fusion)
    inner = (slice(8, -8), slice(8, -16))
    agree = (votes.argmax(0) == labels[1])[inner].mean()
    assert agree > 0.97
    # the keyframe one frame away weighs about 3x the one three frames away
    assert votes.sum(0)[inner].max() > 1.0
    none = carried_votes(human, np.zeros(5, bool), flow, 1, 2, CFG.fusion)
    assert not none.any()


def test_partial_labels_let_the_next_frame_fill_in():
    frames, labels = shifting_video(frames=4, shift=0)  # a still video
    flow = compute_flow(frames, CFG.flow)
    human = np.full_like(labels, VOID)
    human[1, :, :40] = labels[1, :, :40]  # frame 1 labelled on its left half only
    human[3] = labels[3]
    labelled = np.array([False, True, False, True])
    votes = carried_votes(human, labelled, flow, 0, 2, CFG.fusion)
    covered = votes.sum(0) > 0
    assert covered[:, 45:75].all(), "the right half comes from frame 3"
    assert (votes.argmax(0) == labels[0])[covered].mean() > 0.97


def test_a_pixel_called_void_shadows_farther_labels_like_any_answer():
    frames, labels = shifting_video(frames=4, shift=0)
    flow = compute_flow(frames, CFG.flow)
    human = np.full_like(labels, VOID)
    human[1] = labels[1]
    human[1, :, :40] = VOID  # the human answered "void" on frame 1's left half
    human[3] = labels[3]
    spoken = human != VOID
    spoken[1] = True
    labelled = np.array([False, True, False, True])
    without = carried_votes(human, labelled, flow, 0, 2, CFG.fusion)
    assert (without.sum(0)[:, 5:35] > 0).all(), "unknown: frame 3 fills frame 1's gap"
    shadowed = carried_votes(human, labelled, flow, 0, 2, CFG.fusion, spoken=spoken)
    assert not shadowed[:, :, 5:35].any(), "answered: nothing behind it votes"
    assert np.array_equal(shadowed[:, :, 45:], without[:, :, 45:])


def test_fused_labels_beat_the_network_alone_and_keep_human_labels():
    frames, labels, _ = generate(8, 64, 80, seed=2)
    flow = compute_flow(frames, CFG.flow)
    human = np.full_like(labels, VOID)
    human[[0, 4, 7]] = labels[[0, 4, 7]]
    human[2, 10:20, 10:20] = labels[2, 10:20, 10:20]
    c = len(CLASSES)
    fused, small = fuse(_uniform(8, c, 32, 40), human, frames, flow, CFG.fusion)
    assert fused.shape == labels.shape and fused.dtype == np.uint8
    assert small.shape == (8, c, 32, 40) and small.dtype == torch.float16
    assert torch.allclose(small.float().sum(1), torch.ones(8, 32, 40), atol=4e-3)
    given = human != VOID
    assert (fused[given] == human[given]).all()
    value, _ = miou(labels, fused, c)
    assert value > 0.8
    # the belief is surest on a labelled frame (below 1 only where the downsampling mixes
    # two classes) and less sure between keyframes
    assert small[0].max(0).values.mean() > 0.9
    assert small[5].max(0).values.mean() < small[0].max(0).values.mean()


def test_without_any_human_label_the_labels_are_the_network_but_the_belief_is_unsure():
    frames, labels, _ = generate(4, 64, 80, seed=1)
    flow = compute_flow(frames, CFG.flow)
    net = torch.zeros(4, len(CLASSES), 32, 40)
    net[:, 3] = 1.0
    cfg = CFG.fusion.model_copy(update={"guided_radius": 0})
    fused, small = fuse(net, np.full_like(labels, VOID), frames, flow, cfg)
    assert (fused == 3).all()
    assert (small.argmax(1) == 3).all()
    # the prior keeps a pixel that only the network speaks for uncertain
    expected = (cfg.network_weight + cfg.prior / len(CLASSES)) / (cfg.network_weight + cfg.prior)
    # (the belief is kept as float16: three digits)
    assert torch.allclose(small.max(1).values.float(), torch.tensor(expected), atol=1e-3)
    without = cfg.model_copy(update={"prior": 0.0})
    assert torch.equal(fuse(net, np.full_like(labels, VOID), frames, flow, without)[1], net.half())


def test_carrying_only_the_present_classes_equals_carrying_all():
    rng = np.random.default_rng(0)
    labels = np.full((20, 30), VOID, np.uint8)
    labels[3:9, 4:15] = 2
    labels[10:17, 12:25] = 4
    x, y = np.meshgrid(np.arange(30, dtype=np.float32), np.arange(20, dtype=np.float32))
    x += rng.uniform(-2, 2, x.shape).astype(np.float32)
    y += rng.uniform(-2, 2, y.shape).astype(np.float32)
    fast = _carry(labels, 6, x, y)
    assert np.array_equal(fast, _pull(one_hot(labels, 6), x, y))
    assert fast[[2, 4]].any() and not fast[[0, 1, 3, 5]].any()
    assert not _carry(np.full((20, 30), VOID, np.uint8), 6, x, y).any()


def test_sparse_votes_equal_dense_votes_for_labels_in_pieces(monkeypatch):
    """The sparse path (few pixels reach a label) must give the dense path's numbers."""
    import hvsa.method.fusion as fusion

    calls = []
    real = fusion._vote
    monkeypatch.setattr(
        fusion, "_vote", lambda *a, **kw: calls.append(a[-2] is not None) or real(*a, **kw)
    )  # a[-2]: at
    monkeypatch.setattr(fusion, "_REMAP_COLS", 50)  # several rows, the last one padded
    frames, labels, _ = generate(8, 64, 80, seed=3)
    flow = compute_flow(frames, CFG.flow)
    rng = np.random.default_rng(0)
    human = np.full_like(labels, VOID)
    spoken = np.zeros(labels.shape, bool)
    for k in range(8):  # two 12 px squares a frame, one of them answered "void" in part
        for _ in range(2):
            r, c = rng.integers(0, 52), rng.integers(0, 68)
            human[k, r : r + 12, c : c + 12] = labels[k, r : r + 12, c : c + 12]
            spoken[k, r : r + 12, c : c + 12] = True
        human[k, r : r + 4, c : c + 12] = VOID
    labelled = np.ones(8, bool)
    # named labels walked past (named_shadow off), so both paths' shading is compared too
    dense = CFG.fusion.model_copy(update={"sparse_share": 0.0, "named_shadow": False})
    sparse = CFG.fusion.model_copy(update={"sparse_share": 1.0, "named_shadow": False})
    for t in (0, 3, 7):
        named = np.zeros(labels.shape, bool)
        named[::2] = human[::2] != VOID  # every other frame's pieces named: they shade nothing
        for extra in ({}, {"spoken": spoken}, {"spoken": spoken, "named": named}):
            want = carried_votes(human, labelled, flow, t, len(CLASSES), dense, frames, **extra)
            got = carried_votes(human, labelled, flow, t, len(CLASSES), sparse, frames, **extra)
            assert want.any()
            np.testing.assert_array_equal(got, want)
    assert any(calls), "the sparse path was taken"
    calls.clear()
    # full frames take the dense path under the default share, and agree with it too
    full = np.where(np.arange(8)[:, None, None] % 3 == 0, labels, VOID).astype(np.uint8)
    marks = (full != VOID).reshape(8, -1).any(1)
    want = carried_votes(full, marks, flow, 1, len(CLASSES), dense, frames)
    got = carried_votes(full, marks, flow, 1, len(CLASSES), CFG.fusion, frames)
    np.testing.assert_array_equal(got, want)
    assert calls and not any(calls), "full frames take the dense path"
    # the whole fusion (one memo across frames) gives the same labels and belief either way
    net = _uniform(8, len(CLASSES), 32, 40)
    a = fuse(net, human, frames, flow, dense, spoken)
    b = fuse(net, human, frames, flow, sparse, spoken)
    np.testing.assert_array_equal(a[0], b[0])
    assert torch.equal(a[1], b[1])


def test_walking_only_the_live_points_gives_the_votes_of_walking_every_pixel(monkeypatch):
    """Points that left the frame are dropped from the walk: the votes stay the same to the bit,
    on the dense and the sparse path, with and without void answers and named labels."""
    import hvsa.method.fusion as fusion

    frames, labels = shifting_video(frames=14, shift=3)  # 3 px a frame: points leave the frame
    flow = compute_flow(frames, CFG.flow)
    n = len(frames)
    rng = np.random.default_rng(1)
    human = np.full_like(labels, VOID)
    spoken = np.zeros(labels.shape, bool)
    for k in range(n):  # a 16 px square a frame, a band of it answered "void"
        r, c = rng.integers(0, 48), rng.integers(0, 64)
        human[k, r : r + 16, c : c + 16] = labels[k, r : r + 16, c : c + 16]
        spoken[k, r : r + 16, c : c + 16] = True
        human[k, r : r + 3, c : c + 16] = VOID
    human[5] = labels[5]  # one frame labelled in full
    spoken[5] = True
    named = np.zeros(labels.shape, bool)
    named[::2] = human[::2] != VOID
    labelled = (human != VOID).reshape(n, -1).any(1)
    packed = []
    real = fusion._compact

    def spy(*a):
        out = real(*a)
        packed.append(out[-1] is not None)
        return out

    monkeypatch.setattr(fusion, "_compact", spy)
    monkeypatch.setattr(fusion, "_REMAP_COLS", 64)  # several rows, the last one padded
    rows, cols = np.indices(labels.shape[1:])
    regions = np.broadcast_to((rows // 8) * 100 + cols // 8, labels.shape)  # 8 px named regions
    weighed = {"spoken": spoken, "named": named, "regions": regions}  # named pixels by colour
    for share in (0.0, 1.0):  # the dense path, then the sparse one
        cfg = CFG.fusion.model_copy(
            update={"sparse_share": share, "named_shadow": False, "named_colour_sigma": 10.0}
        )
        packed.clear()
        for extra in ({}, {"spoken": spoken}, {"spoken": spoken, "named": named}, weighed):
            for t in (0, 6, n - 1):
                monkeypatch.setattr(fusion, "_COMPACT_BELOW", 0.0)  # never: every pixel walked
                want = carried_votes(human, labelled, flow, t, 2, cfg, frames, **extra)
                for below in (0.5, 1.01):  # the default, and packed again at every step
                    monkeypatch.setattr(fusion, "_COMPACT_BELOW", below)
                    got = carried_votes(human, labelled, flow, t, 2, cfg, frames, **extra)
                    assert want.any()
                    np.testing.assert_array_equal(got, want)
        assert any(packed), "the chains were packed"


def test_a_chain_walks_on_through_frames_labelled_in_pieces():
    """Pieces in every frame of a moving video: each vote still lands on the right pixel."""
    frames, labels = shifting_video(frames=6, shift=3)
    flow = compute_flow(frames, CFG.flow)
    human = np.full_like(labels, VOID)
    for k in range(1, 6):  # a 10 px column band a frame, moving right from frame to frame
        human[k, :, 5 + 12 * k : 15 + 12 * k] = labels[k, :, 5 + 12 * k : 15 + 12 * k]
    labelled = (human != VOID).reshape(6, -1).any(1)
    for share in (0.0, 1.0):
        cfg = CFG.fusion.model_copy(update={"sparse_share": share})
        votes = carried_votes(human, labelled, flow, 0, 2, cfg, frames)
        covered = votes.sum(0) > 0.05
        assert covered[:, 10:60].mean() > 0.5, "bands from frames 1-5 reach frame 0"
        assert (votes.argmax(0) == labels[0])[8:-8][covered[8:-8]].mean() > 0.95


def test_labels_far_from_any_label_are_carried_like_propagation_without_a_window():
    """Two labelled frames 20 apart and a network that knows nothing: with no window each
    frame takes the labels propagation gives it (at least as good), where a 6-frame window
    leaves the middle frames to the network."""
    from hvsa.method.propagate import propagate_human

    frames, labels, _ = generate(24, 64, 80, seed=3)
    flow = compute_flow(frames, CFG.flow)
    human = np.full_like(labels, VOID)
    human[[2, 22]] = labels[[2, 22]]
    annotated = human != VOID
    c = len(CLASSES)
    same, _ = miou(labels, propagate_human(human, annotated, flow), c)
    net = _uniform(24, c, 32, 40)
    unbounded = CFG.fusion.model_copy(update={"window": None})
    fused, _ = fuse(net, human, frames, flow, unbounded, annotated)
    windowed, _ = fuse(net, human, frames, flow, unbounded.model_copy(update={"window": 6}),
                       annotated)  # fmt: skip
    assert miou(labels, fused, c)[0] >= same - 0.002
    assert miou(labels, windowed, c)[0] < same - 0.05


def test_with_no_window_a_chain_walks_as_far_as_its_vote_can_count():
    """Linear in frames: beyond the distance where an unbroken chain's vote is under 1 % of the
    network's, no chain walks (142 frames at distance power 2); a window, where set, wins."""
    from hvsa.method.fusion import carry_limit

    cfg = CFG.fusion.model_copy(update={"window": None, "distance_power": 2.0})
    limit = carry_limit(cfg, 10_000)
    assert 1 / limit**cfg.distance_power < 0.01 * cfg.network_weight
    assert 1 / (limit - 1) ** cfg.distance_power >= 0.01 * cfg.network_weight
    assert carry_limit(cfg, 50) == 50
    assert carry_limit(cfg.model_copy(update={"window": 12}), 10_000) == 12
    assert CFG.fusion.window is not None  # the default bounds every chain, whatever the power


def test_fusing_in_windows_gives_the_labels_of_fusing_the_whole_video():
    frames, labels, _ = generate(12, 32, 40, seed=3)
    flow = compute_flow(frames, CFG.flow)
    c = len(CLASSES)
    human = np.full_like(labels, VOID)
    human[[2, 9]] = labels[[2, 9]]
    net = torch.from_numpy(np.random.default_rng(0).dirichlet(np.ones(c), (12, 32, 40)))
    net = net.permute(0, 3, 1, 2).float().contiguous()
    whole = fuse(net, human, frames, flow, CFG.fusion)
    # three windows in turn, each on top of what the windows before left
    stitched = (np.zeros_like(whole[0]), torch.zeros_like(whole[1]))
    for start in (0, 5, 8):
        only = np.zeros(12, bool)
        only[start : {0: 5, 5: 8, 8: 12}[start]] = True
        stitched = fuse(net, human, frames, flow, CFG.fusion, only=only, previous=stitched)
    np.testing.assert_array_equal(stitched[0], whole[0])
    assert torch.equal(stitched[1], whole[1])


def test_a_new_label_moves_only_the_frames_it_reaches():
    frames, labels, _ = generate(12, 32, 40, seed=4)
    flow = compute_flow(frames, CFG.flow)
    cfg = CFG.fusion.model_copy(update={"window": 2})
    net = torch.full((12, len(CLASSES), 32, 40), 1.0 / len(CLASSES))
    human = np.full_like(labels, VOID)
    human[[1, 10]] = labels[[1, 10]]
    before = fuse(net, human, frames, flow, cfg)
    human[6] = labels[6]
    after = fuse(net, human, frames, flow, cfg)
    moved = reach([6], [], 12, cfg)
    assert moved.tolist() == [False] * 4 + [True] * 5 + [False] * 3  # frames 4..8
    changed = (before[0] != after[0]).reshape(12, -1).any(1)
    assert changed[6] and not changed[~moved].any()  # nothing outside the reach moved
    again = fuse(net, human, frames, flow, cfg, only=moved, previous=before)
    np.testing.assert_array_equal(again[0], after[0])
    assert torch.equal(again[1], after[1])


def test_the_vote_of_two_networks_is_their_mean_and_is_made_once_per_pair(tmp_path):
    from hvsa.data.scaling import upsample_argmax
    from hvsa.data.spill import DiskTensor
    from hvsa.method.predict import MeanProbs, Prediction, mean_prediction
    from hvsa.rounds.engine import View, network_vote

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(5, 3, 4, 6, generator=gen).softmax(1)
    b = torch.rand(5, 3, 4, 6, generator=gen).softmax(1)
    now = Prediction(a.half(), torch.ones(5, 2, 1, 1))
    before = Prediction(b.half(), torch.zeros(5, 2, 1, 1))
    one, two = load_config(REPO / "params.yaml"), load_config(REPO / "params.yaml")
    one.fusion.vote_networks, two.fusion.vote_networks = 1, 2
    assert network_vote(now, before, one) is now  # one network: its own prediction
    assert network_vote(now, None, two) is now  # the first network has none to vote with
    vote = network_vote(now, before, two)
    mean = (a.half().float() + b.half().float()) / 2
    # in the labels alone (the default) the mean is made frame by frame where it is read
    assert isinstance(vote.probs, MeanProbs) and vote.probs.shape == tuple(a.shape)
    torch.testing.assert_close(vote.probs[0:5].float(), mean, atol=1e-3, rtol=0)
    stored = mean_prediction(now, before)  # with fusion.vote_for: all, every step reads it
    assert torch.equal(torch.stack([vote.probs[t] for t in range(5)]), stored.probs)
    two_all = two.model_copy(deep=True)
    two_all.fusion.vote_for = "all"
    assert torch.equal(network_vote(now, before, two_all).probs, stored.probs)
    assert vote.features is now.features  # the current network's, for the next selection
    # a round that kept both networks (class layers) takes the vote it was made with again
    kept = View(now, now, one.fusion, earlier=before, label_vote=vote)
    assert network_vote(now, before, two, kept) is vote
    assert network_vote(now, now, two, kept) is now
    # ... but not where the mean now goes into the belief too: that one is stored
    again = network_vote(now, before, two_all, kept)
    assert again is not vote and torch.equal(again.probs, stored.probs)
    # a long video's probabilities on disk: the same mean, on disk too
    disk_a, disk_b = (
        DiskTensor(tmp_path, a.shape, torch.float16),
        DiskTensor(tmp_path, b.shape, torch.float16),
    )
    disk_a[0:5], disk_b[0:5] = a.half(), b.half()
    on_disk = mean_prediction(Prediction(disk_a, now.features), Prediction(disk_b, now.features), 2)
    assert isinstance(on_disk.probs, DiskTensor)
    torch.testing.assert_close(on_disk.probs[0:5], stored.probs)
    lazy = mean_prediction(Prediction(disk_a, now.features), Prediction(disk_b, now.features),
                           lazy=True)  # fmt: skip
    assert torch.equal(lazy.probs[1:4], stored.probs[1:4])
    assert torch.equal(lazy.probs[3], stored.probs[3])  # fusion reads one frame at a time
    # the labels without fusion (upsampled argmax, chunk by chunk) read the lazy mean alike
    np.testing.assert_array_equal(upsample_argmax(lazy.probs, (8, 12), 2),
                                  upsample_argmax(stored.probs, (8, 12), 2))  # fmt: skip


def test_a_vote_for_the_labels_alone_writes_its_labels_and_leaves_the_belief_as_it_was():
    """``fuse(label_probs=...)``: the labels of fusing with that vote, the belief of fusing with
    the network's own, from one gathering of the carried votes; and ``split_vote`` takes the
    vote of two networks in the labels alone unless ``fusion.vote_for`` is ``all``."""
    from hvsa.method.predict import MeanProbs, Prediction, mean_prediction
    from hvsa.rounds.engine import network_vote, split_vote, view_of

    frames, labels, _ = generate(8, 32, 40, seed=2)
    flow = compute_flow(frames, CFG.flow)
    c = len(CLASSES)
    gen = torch.Generator().manual_seed(3)
    own = torch.rand(8, c, 32, 40, generator=gen).softmax(1)
    other = torch.rand(8, c, 32, 40, generator=gen).softmax(1)
    cfg = CFG.fusion.model_copy(update={"network_weight": 1.0})  # the vote decides unlabelled px
    human = np.full_like(labels, VOID)
    human[[0, 7]] = labels[[0, 7]]
    human[3, :8, :8] = labels[3, :8, :8]  # a piece: its frame holds both kinds of pixel
    by_own, belief_own = fuse(own, human, frames, flow, cfg, human != VOID)
    by_other, _ = fuse(other, human, frames, flow, cfg, human != VOID)
    both, belief = fuse(own, human, frames, flow, cfg, human != VOID, label_probs=other)
    assert (by_own != by_other).any()  # the two votes write different labels
    np.testing.assert_array_equal(both, by_other)
    assert torch.equal(belief, belief_own)
    np.testing.assert_array_equal(both[human != VOID], human[human != VOID])
    for device in _devices():  # the torch kernels (fusion_device) take the second vote alike
        alone, _ = fuse(other, human, frames, flow, cfg, human != VOID, device=device)
        on, belief_on = fuse(own, human, frames, flow, cfg, human != VOID, device=device,
                             label_probs=other)  # fmt: skip
        _, belief_alone = fuse(own, human, frames, flow, cfg, human != VOID, device=device)
        np.testing.assert_array_equal(on, alone)
        assert torch.equal(belief_on, belief_alone)

    now, before = Prediction(own, own), Prediction(other, own)
    cfg_labels = load_config(REPO / "params.yaml")
    assert (cfg_labels.fusion.vote_networks, cfg_labels.fusion.vote_for) == (2, "labels")
    mean = network_vote(now, before, cfg_labels)
    # the mean made frame by frame where fusion reads it writes the labels a stored mean writes
    by_lazy, _ = fuse(own, human, frames, flow, cfg, human != VOID, label_probs=mean.probs)
    stored = mean_prediction(now, before)
    by_stored, _ = fuse(own, human, frames, flow, cfg, human != VOID, label_probs=stored.probs)
    np.testing.assert_array_equal(by_lazy, by_stored)
    assert (by_lazy != by_own).any()
    base, label_vote = split_vote(now, mean, cfg_labels)
    assert base is now and label_vote is mean
    base, label_vote = split_vote(now, now, cfg_labels)  # one network: nothing to split
    assert base is now and label_vote is None
    # the view keeps the current network for the belief and the mean for the labels, and a
    # round that kept both networks (class layers) takes the same mean again: fusion can then
    # stay incremental (label_round compares the votes by identity)
    view = view_of(now, mean, before, Prediction(belief_own, own), cfg, cfg_labels)
    assert view.pred is now and view.own is None and view.network is now
    assert view.label_vote is mean and view.vote is mean and view.earlier is before
    assert network_vote(now, before, cfg_labels, view) is mean
    cfg_all = load_config(REPO / "params.yaml")
    cfg_all.fusion.vote_for = "all"
    stored = network_vote(now, before, cfg_all)  # the belief's vote: stored whole
    assert not isinstance(stored.probs, MeanProbs)
    base, label_vote = split_vote(now, stored, cfg_all)
    assert base is stored and label_vote is None
    view = view_of(now, stored, before, Prediction(belief_own, own), cfg, cfg_all)
    assert view.pred is stored and view.own is now and view.label_vote is None
    with pytest.raises(ValueError, match="frame by frame"):
        split_vote(now, mean, cfg_all)  # a mean made frame by frame never becomes the belief's


def _devices():
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


@pytest.mark.parametrize(
    "shadow,sigma", [(True, None), (False, None), (True, 20.0), (False, 20.0)],
    ids=["named-shadow", "named-walk", "named-weighed", "named-walk-weighed"],
)  # fmt: skip
@pytest.mark.parametrize("device", _devices(), ids=str)
def test_fusion_on_a_torch_device_gives_the_labels_of_the_host_kernels(device, shadow, sigma):
    """The same rule on a device (fusion_device) as on the host: full keyframes, pieces with
    void answers, a class layer and a frame's own labels; OpenCV samples bilinearly in 1/32
    pixel steps, so a few pixels near a tie may differ, never a human label."""
    cfg = CFG.fusion.model_copy(update={"named_shadow": shadow, "named_colour_sigma": sigma})
    frames, labels, _ = generate(10, 64, 80, seed=4)
    flow = compute_flow(frames, CFG.flow)
    c = len(CLASSES)
    rng = np.random.default_rng(1)
    human = np.full_like(labels, VOID)
    spoken = np.zeros(labels.shape, bool)
    human[[0, 9]] = labels[[0, 9]]
    for k in (3, 5, 6):
        r, col = rng.integers(0, 40), rng.integers(0, 56)
        human[k, r : r + 20, col : col + 20] = labels[k, r : r + 20, col : col + 20]
        spoken[k, r : r + 20, col : col + 20] = True
        human[k, r : r + 5, col : col + 20] = VOID
    spoken |= human != VOID
    layers = np.full_like(labels, VOID)
    complete = np.zeros((10, c), bool)
    layers[4][labels[4] == labels[4, 32, 40]] = labels[4, 32, 40]
    complete[4, labels[4, 32, 40]] = True
    # frame 6's piece named, with a class the network and the labels carried from the frames
    # beside it hold unlikely: the evidence path must overrule some of it, alike on both
    named = np.zeros(labels.shape, bool)
    named[6] = human[6] != VOID
    human[6][named[6]] = ((labels[6] + 1) % c)[named[6]]
    net = torch.softmax(torch.randn(10, c, 32, 40, generator=torch.Generator().manual_seed(0)), 1)
    truth6 = torch.from_numpy(one_hot(labels[6, ::2, ::2], c))
    net[6] = 0.97 * truth6 + 0.03 / c
    regions = np.zeros(labels.shape, np.int32)
    regions[6][named[6]] = 7
    host = fuse(net, human, frames, flow, cfg, spoken, layers, complete, named=named,
                regions=regions)  # fmt: skip
    dev = fuse(net, human, frames, flow, cfg, spoken, layers, complete, device=device,
               named=named, regions=regions)  # fmt: skip
    given = (human != VOID) & ~named
    assert (dev[0][given] == human[given]).all()
    overruled = named & (host[0] != human)
    assert overruled.sum() > 0.1 * named.sum()
    assert (dev[0][named] == host[0][named]).mean() > 0.99
    assert (dev[0] == host[0]).mean() > 0.999
    gap = (dev[1].float() - host[1].float()).abs()
    assert gap.mean() < 1e-3 and gap.max() < 0.1
    assert dev[1].dtype == host[1].dtype == torch.float16
    # windows: fusing some frames again on the device keeps the rest as they were
    only = np.zeros(10, bool)
    only[[2, 7]] = True
    again = fuse(net, human, frames, flow, cfg, spoken, layers, complete, only, dev,
                 device=device, named=named, regions=regions)  # fmt: skip
    np.testing.assert_array_equal(again[0], dev[0])
    assert torch.equal(again[1], dev[1])


def test_weigh_named_is_bayes_with_the_naming_as_evidence():
    belief = np.array([[0.98, 0.5, 0.05], [0.02, 0.5, 0.95]], np.float32)  # 2 classes, 3 pixels
    out = weigh_named(belief, np.array([1, 1, 1]), 9.0)
    np.testing.assert_allclose(out.sum(0), 1, rtol=1e-6)
    # pixel 0: the belief is surer of class 0 (49:1) than the naming's odds (10:1): class 0 stays
    np.testing.assert_allclose(out[:, 0], [0.98, 0.2] / np.float32(1.18), rtol=1e-5)
    assert out[:, 0].argmax() == 0
    # an unsure pixel takes the named class at the naming's odds; a sure one is surer still
    np.testing.assert_allclose(out[1, 1], 10 / 11, rtol=1e-6)
    assert out[1, 2] > belief[1, 2]


def test_a_named_region_is_evidence_in_its_own_frame_and_a_drawn_label_is_truth():
    """The same labels in a frame where the network is sure of class 0 on the left half: named
    for the whole region, the left half stays class 0 and the rest takes the naming; drawn, or
    with ``region_odds`` null, every labelled pixel is class 1."""
    c, h, w = 3, 8, 10
    net = torch.full((c, h, w), 0.01)
    net[0, :, :5] = 0.98
    net[1, :, 5:] = 0.4
    net[2, :, 5:] = 0.59
    net /= net.sum(0, keepdim=True)
    frame = np.zeros((h, w, 3), np.uint8)
    own = np.full((h, w), 1, np.uint8)
    own[0] = VOID  # a row nobody labelled
    votes = np.zeros((c, h, w), np.float32)
    cfg = CFG.fusion.model_copy(update={"guided_radius": 0, "network_weight": 1.0})
    everywhere = np.ones((h, w), bool)
    named = fuse_frame(net, votes, frame, own, cfg, named=everywhere).argmax(0)
    assert (named[1:, :5] == 0).all() and (named[1:, 5:] == 1).all()
    assert (named[0, 5:] == 2).all()  # where nobody spoke the network decides, as ever
    drawn = fuse_frame(net, votes, frame, own, cfg).argmax(0)
    assert (drawn[1:] == 1).all()
    certain = cfg.model_copy(update={"region_odds": None})
    assert (fuse_frame(net, votes, frame, own, certain, named=everywhere).argmax(0)[1:] == 1).all()


def test_a_named_label_ends_the_chain_unless_named_shadow_is_off():
    """A still video: frame 1 named one class, frame 3 drawn another, both over the same pixels.
    Seen from frame 0, frame 1 shadows frame 3 as a drawn label would; with ``named_shadow``
    off both vote (1 : 1/3 by distance), so the farther labels count too."""
    frames, labels = shifting_video(frames=4, shift=0)
    flow = compute_flow(frames, CFG.flow)
    human = np.full_like(labels, VOID)
    human[1, 8:24, 8:24] = 0
    human[3, 8:24, 8:24] = 1
    labelled = np.array([False, True, False, True])
    spoken = human != VOID
    drawn = carried_votes(human, labelled, flow, 0, 2, CFG.fusion, spoken=spoken)
    named = np.zeros(human.shape, bool)
    named[1] = spoken[1]
    walking = CFG.fusion.model_copy(update={"named_shadow": False})
    votes = carried_votes(human, labelled, flow, 0, 2, walking, spoken=spoken, named=named)
    inner = (slice(10, 22), slice(10, 22))
    assert drawn[1][inner].max() == 0 and drawn[0][inner].min() > 0.9
    np.testing.assert_allclose(votes[0][inner], drawn[0][inner], rtol=1e-5)
    np.testing.assert_allclose(votes[1][inner], votes[0][inner] / 3, rtol=1e-2)
    as_drawn = carried_votes(human, labelled, flow, 0, 2, CFG.fusion, spoken=spoken, named=named)
    np.testing.assert_array_equal(as_drawn, drawn)


def test_named_trust_weighs_a_named_pixel_by_its_colour_against_its_regions():
    """Region 1: eight dark pixels and two bright ones (the minority its name is wrong for);
    region 2: all mid grey; a drawn pixel and one nobody labelled count fully."""
    colours = np.zeros((3, 6, 3), np.uint8)
    named = np.zeros((3, 6), bool)
    regions = np.zeros((3, 6), np.int32)
    named[:2, :5] = True
    regions[:2, :5] = 1
    colours[0, 3:5] = 200  # two of region 1's ten pixels far from its median (0)
    named[2, :4] = True
    regions[2, :4] = 2
    colours[2, :4] = 128
    trust = named_trust(colours, named, regions, sigma=20.0)
    assert trust.dtype == np.float32
    np.testing.assert_allclose(trust[0, 3:5], np.exp(-200 / 20), rtol=1e-5)
    assert (trust[0, :3] == 1).all() and (trust[1, :5] == 1).all()
    assert (trust[2, :4] == 1).all(), "a region of one colour: every pixel as its median"
    assert trust[0, 5] == trust[2, 5] == 1, "not named: counts fully"


def test_a_doubtful_named_pixel_votes_less_and_leaves_the_chain_to_farther_labels():
    """A still video: frame 1 named class 0 over a square whose top rows are another colour
    (the minority the name is wrong for), frame 3 drawn class 1 over it. Seen from frame 0,
    with ``named_colour_sigma`` the top rows' vote from frame 1 nearly vanishes and frame 3's
    takes the pixel; the rest of the square stays frame 1's, as without it."""
    frames = np.full((4, 32, 32, 3), 40, np.uint8)
    frames[:, 8:12, 8:24] = 220
    flow = compute_flow(frames, CFG.flow)
    human = np.full((4, 32, 32), VOID, np.uint8)
    human[1, 8:24, 8:24] = 0
    human[3, 8:24, 8:24] = 1
    labelled = np.array([False, True, False, True])
    spoken = human != VOID
    named = np.zeros(human.shape, bool)
    named[1] = spoken[1]
    regions = np.where(named, 5, 0).astype(np.int32)
    alike = CFG.fusion.model_copy(update={"named_colour_sigma": None})
    plain = carried_votes(human, labelled, flow, 0, 2, alike, frames, spoken, named=named,
                          regions=regions)  # fmt: skip
    weighed = CFG.fusion.model_copy(update={"named_colour_sigma": 20.0})
    votes = carried_votes(human, labelled, flow, 0, 2, weighed, frames, spoken, named=named,
                          regions=regions)  # fmt: skip
    top, rest = (slice(9, 11), slice(10, 22)), (slice(14, 22), slice(10, 22))
    assert (plain.argmax(0)[top] == 0).all() and plain[1][top].max() == 0
    assert (votes.argmax(0)[top] == 1).all(), "frame 3's label takes the doubtful rows"
    assert votes[0][top].max() < 1e-3
    np.testing.assert_allclose(votes[:, rest[0], rest[1]], plain[:, rest[0], rest[1]], rtol=1e-5)
    # in its own frame the doubtful rows keep the naming's odds times their trust
    odds = np.array([9.0, 0.9])
    belief = np.array([[0.5, 0.5], [0.5, 0.5]], np.float32)
    out = weigh_named(belief, np.array([0, 0]), odds)
    np.testing.assert_allclose(out[0], [10 / 11, 1.9 / 2.9], rtol=1e-6)
    # and fuse_frame gives each named pixel region_odds x its trust, on the host and a device
    from hvsa.method import fusion_device

    c, h, w = 2, 4, 4
    net = torch.full((c, h, w), 0.5)
    frame = np.zeros((h, w, 3), np.uint8)
    own = np.zeros((h, w), np.uint8)
    everywhere = np.ones((h, w), bool)
    trust = np.ones((h, w), np.float32)
    trust[0] = 0.1
    still = np.zeros((c, h, w), np.float32)
    cfg = CFG.fusion.model_copy(update={"guided_radius": 0})
    got = fuse_frame(net, still, frame, own, cfg, named=everywhere, trust=trust)
    before = fuse_frame(net, still, frame, np.full((h, w), VOID, np.uint8), cfg)
    want = weigh_named(before.reshape(c, -1), own.reshape(-1), cfg.region_odds * trust.ravel())
    np.testing.assert_allclose(got, want.reshape(c, h, w), rtol=1e-5)
    assert got[0, 0, 0] < got[0, 1, 0], "the doubtful row keeps less of the naming"
    dev = fusion_device.fuse_frame(net, torch.from_numpy(still), frame, own, cfg,
                                   named=everywhere, trust=trust)  # fmt: skip
    np.testing.assert_allclose(dev.numpy(), got, rtol=1e-5)
