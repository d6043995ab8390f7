import json

import numpy as np
import pytest
import torch

import hvsa.method.calibrate as calibrate
from hvsa.cli import main
from hvsa.config import load_config
from hvsa.data.synth import CLASSES
from hvsa.data.video import VOID
from hvsa.method.calibrate import calibrated, probe_frames, radius_scores
from hvsa.method.motion import compute_flow
from tests.conftest import REPO, run_args, shifting_video

CFG = load_config(REPO / "params.yaml")


def _labelled_at(labels: np.ndarray, frames: list[int]) -> np.ndarray:
    human = np.full_like(labels, VOID)
    human[frames] = labels[frames]
    return human


def test_probes_wait_for_enough_labelled_frames_then_spread_over_them():
    labels = np.zeros((20, 4, 4), np.uint8)
    assert probe_frames(_labelled_at(labels, [2, 9, 15]), 4).size == 0
    human = _labelled_at(labels, [0, 3, 5, 8, 12, 19])
    human[7, 0, 0] = 1  # a frame with one labelled pixel counts as labelled
    assert list(probe_frames(human, 3)) == [0, 7, 19]
    assert list(probe_frames(human, 7)) == [0, 3, 5, 7, 8, 12, 19]


def test_the_radius_is_probed_on_every_labelled_frame_once_enough_hold_labels():
    """Eight frames spread over the labelled ones are a new eight whenever frames are labelled;
    every labelled frame changes by the new frames alone."""
    labels = np.zeros((20, 4, 4), np.uint8)
    assert calibrate.radius_probes(_labelled_at(labels, [2, 9, 15]), 4, None).size == 0
    human = _labelled_at(labels, [0, 3, 5, 8, 12, 19])
    human[7, 0, 0] = 1
    assert list(calibrate.radius_probes(human, 4, None)) == [0, 3, 5, 7, 8, 12, 19]
    assert list(calibrate.radius_probes(human, 4, 3)) == [0, 7, 19]
    more = human.copy()
    more[10] = 0
    assert list(probe_frames(more, 4)) == [0, 5, 10, 19], "spread probes lose frame 8"
    old, new = (set(calibrate.radius_probes(h, 4, None)) for h in (human, more))
    assert new - old == {10} and old <= new, "every labelled frame: only the new one added"


def test_a_probe_limit_below_the_frames_calibration_waits_for_is_one_clear_error():
    from hvsa.config import FusionConfig, parse_set_option
    from hvsa.errors import HvsaError

    with pytest.raises(HvsaError, match="calibration_probe_limit"):
        load_config(None, parse_set_option(["fusion.calibration_probe_limit=4"]))
    unset = CFG.fusion.model_dump(exclude={"calibration_probe_limit"})
    assert FusionConfig(**unset).calibration_probe_limit == CFG.fusion.calibration_probe_limit, (
        "the typed default is params.yaml's"
    )


def test_a_probe_is_scored_without_its_own_labels():
    """Frames 1 and 3 say class 2 everywhere, frame 0 says 4: frame 1 left out gets frame 0's
    4 (one frame away, where frame 3 is two), so it scores 0; with its own labels it would
    score 1. With frame 0 saying 2 as well, frame 3 left out scores 1."""
    frames, _ = shifting_video(frames=4, shift=0)  # a still video: every chain stays inside
    flow = compute_flow(frames, CFG.flow)
    human = np.full(frames.shape[:3], 2, np.uint8)
    human[0] = 4
    human[2] = VOID
    net = torch.full((4, len(CLASSES), 32, 40), 1.0 / len(CLASSES))
    scores = radius_scores(net, human, frames, flow, CFG.fusion, None, [0, 2], np.array([1]))
    assert np.allclose(scores, 0.0), "its own labels would have scored 1"
    human[0] = 2
    same = radius_scores(net, human, frames, flow, CFG.fusion, None, [0, 2], np.array([3]))
    assert np.allclose(same, 1.0), "frame 3 is what frames 0 and 1 carry"


def test_a_probe_is_scored_against_its_truth_not_its_fill():
    """Frame 1 holds a fill of class 4 over pixels a person drew as 2 (its truth); the other
    frames say 2. Left out, frame 1 gets their 2: scored against the fill that is 0, against
    the truth 1; only the truth's pixels count."""
    frames, _ = shifting_video(frames=4, shift=0)
    flow = compute_flow(frames, CFG.flow)
    human = np.full(frames.shape[:3], 2, np.uint8)
    human[1] = 4
    truth = np.full_like(human, VOID)
    truth[1, :4, :4] = 2
    net = torch.full((4, len(CLASSES), 32, 40), 1.0 / len(CLASSES))
    args = (net, human, frames, flow, CFG.fusion, None, [0, 2], np.array([1]))
    assert np.allclose(radius_scores(*args), 0.0), "scored against the fill"
    assert np.allclose(radius_scores(*args, truth), 1.0), "scored against the truth"


def test_calibration_takes_the_best_radius_keeps_the_configured_one_on_a_tie(monkeypatch):
    labels = np.zeros((10, 8, 8), np.uint8)
    human = _labelled_at(labels, list(range(10)))
    cfg = CFG.fusion.model_copy(update={"guided_radius": 2, "radius_choices": [0, 1, 3]})
    seen = {}

    def scoring(*scores: float):
        """Per-probe confusions of two classes whose pooled mIoU is each of ``scores``."""

        def fake(net, hum, frames, flow, cfgs, spoken, probes, by_probe=False, truth=None):
            seen["radii"], seen["probes"] = [c.guided_radius for c in cfgs], list(probes)
            one = [np.array([[s, (1 - s) / 2], [(1 - s) / 2, s]]) for s in scores]
            return np.stack([np.stack([cm] * len(probes)) for cm in one])

        return fake

    monkeypatch.setattr(calibrate, "leave_one_out_confusions", scoring(0.5, 0.7, 0.6, 0.2))
    assert calibrated(cfg, None, human, None, None).guided_radius == 1
    assert seen["radii"] == [0, 1, 2, 3] and seen["probes"] == list(range(10)), "every one"
    capped = cfg.model_copy(update={"calibration_probes": 4, "calibration_probe_limit": 4})
    calibrated(capped, None, human, None, None)
    assert seen["probes"] == [0, 3, 6, 9], "at most calibration_probe_limit, spread evenly"
    monkeypatch.setattr(calibrate, "leave_one_out_confusions", scoring(0.7, 0.7, 0.7, 0.2))
    assert calibrated(cfg, None, human, None, None).guided_radius == 2
    off = cfg.model_copy(update={"radius_choices": []})
    assert calibrated(off, None, human, None, None) is off
    few = _labelled_at(labels, [1, 5])
    assert calibrated(cfg, None, few, None, None) is cfg, "too few labelled frames to probe"


def test_the_network_weight_is_scored_by_the_network_as_if_unseen_and_by_its_own_vote():
    """Labelled frames alternate classes 2 and 4, so a probe fused from its neighbours gets
    the other class. A network whose votes (as if unseen, and its own) say the probe's class
    wins at a large weight; where the two readings disagree, the reading setting decides."""
    frames, _ = shifting_video(frames=6, shift=0)
    flow = compute_flow(frames, CFG.flow)
    human = np.stack([np.full(frames.shape[1:3], 2 if f % 2 == 0 else 4, np.uint8)
                      for f in range(6)])  # fmt: skip
    cfg = CFG.fusion.model_copy(update={
        "radius_choices": [], "calibration_probes": 2, "network_weight_choices": [10.0],
    })  # fmt: skip

    def one_hot(cls: np.ndarray) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(torch.from_numpy(cls).long(), len(CLASSES))
        return onehot.permute(0, 3, 1, 2).float()

    own = one_hot(human)  # right everywhere
    right = {2: own[2], 3: own[3]}
    wrong = {2: own[3], 3: own[2]}
    readings = calibrate.weight_scores(own, human, frames, flow, cfg, None, [0.005, 10.0], wrong)
    assert np.allclose(readings, [[0, 0], [0, 1]]), "(unseen, own) x (carried wins, net wins)"
    assert calibrated(cfg, own, human, frames, flow, None, right).network_weight == 10.0
    # the readings disagree: their mean (0, 0.5) picks the network; either alone decides
    assert calibrated(cfg, own, human, frames, flow, None, wrong).network_weight == 10.0
    unseen_only = cfg.model_copy(update={"network_weight_reading": "unseen"})
    assert calibrated(unseen_only, own, human, frames, flow, None, wrong).network_weight == 0.005
    own_only = cfg.model_copy(update={"network_weight_reading": "own"})
    assert calibrated(own_only, own, human, frames, flow, None, wrong).network_weight == 10.0
    # both readings wrong: a tie, and the configured weight stays
    swapped = torch.stack([own[1], own[0], own[3], own[2], own[5], own[4]])
    assert calibrated(cfg, swapped, human, frames, flow, None, wrong).network_weight == 0.005
    assert calibrated(cfg, own, human, frames, flow, None, None) is cfg, "no unseen vote"
    assert calibrated(cfg, own, human, frames, flow, None, {2: own[2]}) is cfg, "too few probes"
    off = cfg.model_copy(update={"network_weight_choices": []})
    assert calibrated(off, own, human, frames, flow, None, right) is off


def test_another_radius_only_where_it_wins_across_resampled_probes(monkeypatch):
    """Two settings, two classes, 8 probes. Where setting 1 is better at every probe it is
    chosen; where it is far better at one probe and a little worse at the other seven, its
    pooled score is higher but it wins only the resamples that draw that probe (about 66 %),
    so at a confidence of 0.9 the configured setting stays. ``calibrated`` takes the per-probe
    confusions of each radius to it."""
    from hvsa.method.calibrate import confident_choice

    def cm(right: int, wrong: int) -> np.ndarray:
        return np.array([[right, wrong], [wrong, right]])

    everywhere = np.stack([np.stack([cm(90, 10)] * 8), np.stack([cm(95, 5)] * 8)])
    assert confident_choice(everywhere, [2, 0], 2, 0.9) == 0
    one_probe = np.stack([
        np.stack([cm(90, 10)] * 7 + [cm(10, 90)]),
        np.stack([cm(89, 11)] * 7 + [cm(90, 10)]),
    ])  # fmt: skip
    chosen = [confident_choice(one_probe, [2, 0], 2, level) for level in (0.5, 0.9)]
    assert chosen == [0, 2], "higher pooled, but not across 90 % of the resamples"
    assert confident_choice(everywhere, [2, 0], 0, 0.9) == 0, "the configured one is best"

    labels = np.zeros((10, 8, 8), np.uint8)
    human = _labelled_at(labels, list(range(10)))
    cfg = CFG.fusion.model_copy(update={"guided_radius": 2, "radius_choices": [0],
                                        "radius_confidence": 0.9})  # fmt: skip
    seen = {}

    def per_probe(net, hum, frames, flow, cfgs, spoken, probes, by_probe=False, truth=None):
        seen["radii"], seen["by_probe"] = [c.guided_radius for c in cfgs], by_probe
        return one_probe[::-1]  # radius 0 first: the one that wins the pooled score

    monkeypatch.setattr(calibrate, "leave_one_out_confusions", per_probe)
    assert calibrated(cfg, None, human, None, None).guided_radius == 2
    assert seen == {"radii": [0, 2], "by_probe": True}
    sure = cfg.model_copy(update={"radius_confidence": 0.5})
    assert calibrated(sure, None, human, None, None).guided_radius == 0


def test_the_loop_records_the_radius_it_calibrated(tiny_videos, pretrained, tmp_path, monkeypatch):
    calls = []

    def prefer_radius_0(net, human, frames, flow, cfgs, spoken, probes, by_probe=False, truth=None):
        calls.append(len(probes))
        right = [np.diag([1, 1]) if c.guided_radius == 0 else np.ones((2, 2)) for c in cfgs]
        return np.stack([np.stack([cm] * len(probes)) for cm in right])

    monkeypatch.setattr(calibrate, "leave_one_out_confusions", prefer_radius_0)
    out = tmp_path / "calibrated"
    args = run_args(tiny_videos[0], pretrained, out, "frame", 2, rounds=2)
    sets = ["--set", "finetune.steps=2", "--set", "fusion.calibration_probes=2",
            "--set", "fusion.radius_choices=[0,1]"]  # fmt: skip
    assert main([*args, *sets]) == 0
    radii = [json.loads((out / f"round_{r:02d}" / "metrics.json").read_text())["guided_radius"]
             for r in (0, 1, 2)]  # fmt: skip
    assert radii == [CFG.fusion.guided_radius, 0, 0], "nothing labelled yet, then calibrated"
    assert calls == [2, 4], "every labelled frame, once calibration_probes frames are"


def test_the_loop_records_the_network_weight_it_calibrated(tiny_videos, pretrained, tmp_path,
                                                           monkeypatch):  # fmt: skip
    probed = []

    def prefer_half(net, human, frames, flow, cfg, spoken, weights, unseen):
        probed.append(sorted(unseen))
        return np.array([[1.0 if w == 0.5 else 0.5 for w in weights]] * 2)

    monkeypatch.setattr(calibrate, "weight_scores", prefer_half)
    out = tmp_path / "weighed"
    args = run_args(tiny_videos[0], pretrained, out, "frame", 2, rounds=2)
    sets = ["--set", "finetune.steps=2", "--set", "fusion.calibration_probes=2",
            "--set", "fusion.estimate_from=2", "--set", "fusion.network_weight_choices=[0.5]"]
    assert main([*args, *sets]) == 0
    weights = [json.loads((out / f"round_{r:02d}" / "metrics.json").read_text())["network_weight"]
               for r in (0, 1, 2)]  # fmt: skip
    assert weights == [CFG.fusion.network_weight, 0.5, 0.5], "nothing labelled yet, then probed"
    assert [len(p) for p in probed] == [2, 2], "the estimate's probes, each round"


def _probs(top: np.ndarray, second: float) -> np.ndarray:
    """(2,h,w) probabilities with class ``top`` (h,w) at 1 - ``second``."""
    p = np.where(top == 0, 1 - second, second).astype(np.float32)
    return np.stack([p, 1 - p])


def test_agreement_is_how_clearly_the_top_class_beats_the_runner_up():
    from hvsa.method.estimate import EDGES, agreement_bins

    probs = np.zeros((3, 1, 3), np.float32)
    probs[:, 0, 0] = [0.5, 0.5, 0.0]  # a tie: lowest bin
    probs[:, 0, 1] = [0.1, 0.2, 0.7]  # 0.7 / 0.9
    probs[:, 0, 2] = [0.02, 0.0, 0.98]  # weak votes that agree beat a strong contested pair
    k, b = agreement_bins(probs)
    assert k[0, 1] == 2 and k[0, 2] == 2
    assert b[0, 0] == 0 and EDGES[b[0, 1]] <= 0.7 / 0.9 < EDGES[b[0, 1] + 1]
    assert b[0, 2] > b[0, 1]


def test_reliability_counts_what_the_human_said_where_the_belief_said_k():
    from hvsa.method.estimate import reliability, reliability_counts

    top = np.array([[0, 0, 1, 1]])
    truth = np.array([[0, 1, 1, 255]], np.uint8)  # void not counted
    counts = reliability_counts(_probs(top, 0.01), truth, 2)
    assert counts.sum() == 3
    assert counts[0].sum(0).tolist() == [1, 1] and counts[1].sum(0).tolist() == [0, 1]
    post = reliability(counts)
    assert np.allclose(post.sum(-1), 1)
    # a bin no probe reached takes the bin below it: here the first bin with pixels
    filled = int(np.flatnonzero(counts[0].sum(-1))[0])
    assert np.allclose(post[0, -1], post[0, filled], atol=0.05)


def test_the_estimate_spreads_free_pixels_by_what_the_probes_measured():
    from hvsa.method.estimate import estimate, frame_accuracy, reliability, summarise

    rng = np.random.default_rng(0)
    top = rng.integers(0, 2, (4, 8, 8))
    belief = torch.from_numpy(np.stack([_probs(t, 0.01) for t in top]))
    # probes: where the belief says 0 the truth is 1 one time in four; class 1 always right
    truth = top.copy()
    truth[(top == 0) & (rng.random(top.shape) < 0.25)] = 1
    from hvsa.method.estimate import reliability_counts

    counts = np.stack([reliability_counts(b.numpy(), t.astype(np.uint8), 2)
                       for b, t in zip(belief, truth, strict=True)])  # fmt: skip
    nobody = np.full(top.shape, 255, np.uint8)
    ious = estimate(summarise(belief, nobody), counts)
    # the video is the probes here: the estimate is their own IoU (smoothing aside)
    tp = [((top == c) & (truth == c)).sum() for c in (0, 1)]
    union = [((top == c) | (truth == c)).sum() for c in (0, 1)]
    assert ious == pytest.approx(np.array(tp) / np.array(union), abs=0.03)
    # what people labelled counts as right: labelling half the video raises the estimate
    half = nobody.copy()
    half[:2] = truth[:2]
    assert np.nanmean(estimate(summarise(belief, half), counts)) > np.nanmean(ious)
    # per frame: labelled frames are right, the others at the measured rate
    acc = frame_accuracy(summarise(belief, half), reliability(counts.sum(0)))
    assert acc[:2] == pytest.approx(1.0) and (acc[2:] < 0.95).all() and (acc[2:] > 0.8).all()
    assert np.isnan(frame_accuracy(summarise(belief, half), None)).sum() == 0


def test_a_completed_layer_rules_its_class_out_of_the_free_pixels():
    from hvsa.method.estimate import estimate, summarise

    top = np.zeros((1, 4, 4), np.int64)
    belief = torch.from_numpy(_probs(top[0], 0.01)[None])
    counts = np.zeros((1, 2, 11, 2))
    counts[0, 0, -1] = [50, 50]  # where the belief says 0, half is truly 1
    nobody = np.full((1, 4, 4), 255, np.uint8)
    plain = estimate(summarise(belief, nobody), counts)
    layer = nobody.copy()
    layer[0, 0, 0] = 1  # one pixel of class 1, and its layer says that is all of it
    done = estimate(summarise(belief, layer, np.array([[False, True]])), counts)
    assert plain[0] < 0.6 and done[0] == pytest.approx(1.0) and done[1] == pytest.approx(1.0)


def test_the_estimate_interval_is_the_spread_over_resampled_probes():
    from hvsa.method.estimate import interval, summarise

    top = np.zeros((2, 4, 4), np.int64)
    top[:, :, 2:] = 1
    belief = torch.from_numpy(np.stack([_probs(t, 0.01) for t in top]))
    summary = summarise(belief, np.full(top.shape, 255, np.uint8))
    good = np.zeros((2, 11, 2))
    good[0, -1], good[1, -1] = [90, 10], [10, 90]
    bad = np.zeros((2, 11, 2))
    bad[0, -1], bad[1, -1] = [50, 50], [50, 50]
    low, high = interval(summary, np.stack([good] * 4), 0.9)
    assert low == pytest.approx(high)  # every probe says the same: no spread
    low2, high2 = interval(summary, np.stack([good, bad] * 2), 0.9)
    assert low2 < high2 <= high + 1e-9
    # the belief's most certain pixels, which no probe reached: the low end reads them at their
    # class's average over the probes, the estimate (and the high end) as the nearest bin below
    sure = torch.from_numpy(np.stack([_probs(t, 1e-5) for t in top]))
    mixed = np.zeros((2, 11, 2))
    mixed[0, 0], mixed[0, 6], mixed[1, 6] = [50, 50], [100, 0], [0, 100]
    summary = summarise(sure, np.full(top.shape, 255, np.uint8))
    low3, high3 = interval(summary, np.stack([mixed] * 4), 0.9)
    from hvsa.method.estimate import estimate

    assert np.nanmean(estimate(summary, np.stack([mixed] * 4))) == pytest.approx(high3)
    assert low3 < high3 - 0.1
    # read as the bin below (low_below), the low end reads them as the estimate does
    below3, _ = interval(summary, np.stack([mixed] * 4), 0.9, low_below=True)
    assert below3 == pytest.approx(high3)
    # the network's own vote at the probes reads the high end, the unseen one the low end
    summary = summarise(belief, np.full(top.shape, 255, np.uint8))
    low4, high4 = interval(summary, np.stack([bad] * 4), 0.9, high_counts=np.stack([good] * 4))
    assert low4 == pytest.approx(interval(summary, np.stack([bad] * 4), 0.9)[0])
    assert high4 == pytest.approx(high) and low4 < high4 - 0.1


def test_without_ground_truth_the_stop_rule_holds_the_interval_low_end_to_the_target():
    from hvsa.rounds.rules import stop_reason
    from tests.conftest import tiny_config

    cfg = tiny_config(**{"loop.target_miou": 0.9, "loop.rounds": 50})
    m = {"round": 3, "miou": None, "clicks_total": 10, "samples": 1, "miou_estimate": 0.93}
    assert stop_reason(m | {"miou_interval": [0.88, 0.95]}, cfg) is None
    assert "at least 0.910" in stop_reason(m | {"miou_interval": [0.91, 0.95]}, cfg)
    assert "estimated mIoU of 0.930" in stop_reason(m | {"miou_interval": None}, cfg)


def test_a_mirrored_prediction_is_the_mirror_images_prediction_mirrored_back():
    from hvsa.method.network import SegmentationNet
    from hvsa.method.predict import predict, predict_mirrored

    torch.manual_seed(0)
    model = SegmentationNet("lraspp_mobilenet_v3_large", 3)
    frames = torch.rand(3, 3, 32, 48) * 255
    cpu = torch.device("cpu")
    mirrored = predict_mirrored(model, frames, 2, cpu)
    expected = predict(model, frames.flip(-1), 2, cpu).probs.flip(-1)
    assert mirrored.shape == (3, 3, 32, 48) and mirrored.dtype == torch.float16
    assert torch.equal(mirrored, expected)
    assert not torch.equal(mirrored, predict(model, frames, 2, cpu).probs), "not the frame's own"


def test_the_estimates_counts_take_the_unseen_vote_the_confusions_keep_the_networks_own():
    """A network that speaks louder than the carried labels: probe 1's counts follow the vote
    given for it, its confusion (what auto prices layers by) the network's own."""
    from hvsa.method.calibrate import leave_one_out_probes

    frames, _ = shifting_video(frames=4, shift=0)
    flow = compute_flow(frames, CFG.flow)
    human = np.full(frames.shape[:3], 2, np.uint8)
    human[0] = 4
    cfg = CFG.fusion.model_copy(update={"network_weight": 100.0, "guided_radius": 0})
    net = torch.full((4, len(CLASSES), 32, 40), 1.0 / len(CLASSES))
    net[:, 1] += 0.5  # the network's own vote: class 1
    net /= net.sum(1, keepdim=True)
    probes = np.array([1, 3])
    cms, counts, own = leave_one_out_probes(net, human, frames, flow, cfg, None, probes)
    assert np.array_equal(counts, own), "no other vote given: both counts alike"
    unseen = torch.zeros(len(CLASSES), 32, 40)
    unseen[3] = 1.0  # as if unseen: class 3
    cms2, counts2, own2 = leave_one_out_probes(net, human, frames, flow, cfg, None, probes,
                                               {1: unseen})  # fmt: skip
    assert np.array_equal(cms, cms2), "the confusions keep the network's own vote"
    assert np.array_equal(own, own2), "and so do the counts of the interval's high end"
    assert counts[0, 1].sum() == counts[0].sum() and counts2[0, 3].sum() == counts2[0].sum()
    assert np.array_equal(counts[1], counts2[1]), "probe 3 was given no other vote"
    same = leave_one_out_probes(net, human, frames, flow, cfg, None, probes, {1: net[1]})[1]
    assert np.array_equal(same, counts)


def test_a_round_measures_with_the_probes_mirrored_votes(tiny_videos, pretrained, tmp_path,
                                                          monkeypatch):  # fmt: skip
    """`hvsa run` gives its rounds' views the network's vote at exactly the estimate's probes,
    predicted from their mirror images, and the measurement fuses the probes with it: from
    ``fusion.estimate_from`` frames on, before ``auto``'s ``calibration_probes``."""
    import hvsa.rounds.engine as engine
    import hvsa.rounds.steps as steps

    made, used = [], []
    real_votes, real_probes = engine.unseen_votes, steps.leave_one_out_probes

    def votes_spy(model, ctx, probes, cfg, device):
        votes = real_votes(model, ctx, probes, cfg, device)
        made.append(votes)
        return votes

    def probes_spy(*args):
        used.append((sorted(args[6].tolist()), args[7]))
        return real_probes(*args)

    monkeypatch.setattr(engine, "unseen_votes", votes_spy)
    monkeypatch.setattr(steps, "leave_one_out_probes", probes_spy)
    out = tmp_path / "run"
    args = run_args(tiny_videos[0], pretrained, out, "frame", 2, rounds=3)
    sets = ["--set", "finetune.steps=2", "--set", "fusion.calibration_probes=6",
            "--set", "fusion.estimate_from=2"]  # fmt: skip
    assert main([*args, *sets]) == 0
    assert len(made) == 4 and made[0] == {}, "round 0 (nothing labelled), then each round"
    assert [len(v) for v in made[1:]] == [2, 4, 6]
    # every measurement hid the frames it had mirrored votes for, and fused them with those
    measured = [(probes, unseen) for probes, unseen in used if unseen is not None]
    assert [probes for probes, _ in measured] == [sorted(v) for v in made[1:]]
    assert all(unseen is votes for (_, unseen), votes in zip(measured, made[1:], strict=True))
    timings = json.loads((out / "round_02" / "metrics.json").read_text())["timings"]
    assert timings["probe_votes"] > 0


def test_the_estimate_hides_as_many_frames_as_there_are_from_estimate_from_on():
    from hvsa.rounds.state import LoopState
    from hvsa.rounds.steps import estimate_probes

    state = LoopState.empty(20, (4, 4))
    cfg = CFG.model_copy(update={"fusion": CFG.fusion.model_copy(
        update={"calibration_probes": 6, "estimate_from": 4})})  # fmt: skip
    for n, auto, estimate in ((3, 0, 0), (4, 0, 4), (5, 0, 5), (6, 6, 6), (9, 6, 6)):
        state.human[:] = VOID
        state.annotated[:] = False
        frames = np.linspace(0, 19, n).round().astype(int)
        state.human[frames] = 1
        state.annotated[frames] = True
        state.human[1, 0, 0] = 1  # a frame labelled in part is never a probe
        state.annotated[1, 0, 0] = True
        assert len(estimate_probes(state, cfg)) == auto, n
        probes = estimate_probes(state, cfg, cfg.fusion.estimate_from)
        assert len(probes) == estimate and 1 not in probes, n


def test_rounds_estimate_from_estimate_from_frames_while_the_radius_waits(tiny_videos, pretrained,
                                                                         tmp_path):  # fmt: skip
    out = tmp_path / "run"
    args = run_args(tiny_videos[0], pretrained, out, "frame", 2, rounds=3)
    sets = ["--set", "finetune.steps=2", "--set", "fusion.calibration_probes=6",
            "--set", "fusion.estimate_from=2", "--set", "fusion.radius_choices=[0,1]"]  # fmt: skip
    assert main([*args, *sets]) == 0
    rounds = [json.loads((out / f"round_{r:02d}" / "metrics.json").read_text()) for r in range(4)]
    assert [m["miou_estimate_from"] for m in rounds] == ["belief"] + ["leave-one-out"] * 3
    assert all(m["miou_interval"] is not None for m in rounds[1:])
    assert [m["timings"]["probe_votes"] > 0 for m in rounds[1:]] == [True] * 3
    # the fusion's radius is still calibrated from fusion.calibration_probes frames on
    assert [m["guided_radius"] for m in rounds[:3]] == [CFG.fusion.guided_radius] * 3
