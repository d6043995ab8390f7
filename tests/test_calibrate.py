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


def test_calibration_takes_the_best_radius_keeps_the_configured_one_on_a_tie(monkeypatch):
    labels = np.zeros((10, 8, 8), np.uint8)
    human = _labelled_at(labels, list(range(10)))
    cfg = CFG.fusion.model_copy(update={"guided_radius": 2, "radius_choices": [0, 1, 3]})
    seen = {}

    def fake(net, hum, frames, flow, c, spoken, radii, probes):
        seen["radii"], seen["probes"] = radii, list(probes)
        return np.array([0.5, 0.7, 0.6, 0.2])

    monkeypatch.setattr(calibrate, "radius_scores", fake)
    assert calibrated(cfg, None, human, None, None).guided_radius == 1
    assert seen["radii"] == [0, 1, 2, 3] and len(seen["probes"]) == cfg.calibration_probes
    monkeypatch.setattr(calibrate, "radius_scores", lambda *a: np.array([0.7, 0.7, 0.7, 0.2]))
    assert calibrated(cfg, None, human, None, None).guided_radius == 2
    off = cfg.model_copy(update={"radius_choices": []})
    assert calibrated(off, None, human, None, None) is off
    few = _labelled_at(labels, [1, 5])
    assert calibrated(cfg, None, few, None, None) is cfg, "too few labelled frames to probe"


def test_the_loop_records_the_radius_it_calibrated(tiny_videos, pretrained, tmp_path, monkeypatch):
    calls = []

    def prefer_radius_0(net, human, frames, flow, cfgs, spoken, probes):
        calls.append(len(probes))
        return np.array([1.0 if c.guided_radius == 0 else 0.5 for c in cfgs])

    monkeypatch.setattr(calibrate, "leave_one_out_scores", prefer_radius_0)
    out = tmp_path / "calibrated"
    args = run_args(tiny_videos[0], pretrained, out, "frame", 2, rounds=2)
    sets = ["--set", "finetune.steps=2", "--set", "fusion.calibration_probes=2",
            "--set", "fusion.radius_choices=[0,1]"]  # fmt: skip
    assert main([*args, *sets]) == 0
    radii = [json.loads((out / f"round_{r:02d}" / "metrics.json").read_text())["guided_radius"]
             for r in (0, 1, 2)]  # fmt: skip
    assert radii == [CFG.fusion.guided_radius, 0, 0], "nothing labelled yet, then calibrated"
    assert calls and all(n == 2 for n in calls)


def test_the_estimate_interval_is_the_spread_over_resampled_probes():
    from hvsa.method.auto import estimate_interval

    known, totals = np.zeros(2), np.array([1000.0, 1000.0])
    same = np.stack([np.array([[90, 10], [10, 90]])] * 4)
    low, high = estimate_interval(same, known, totals, 0.9)
    # every probe says the same: no spread, the point estimate (IoU 90/110 per class)
    assert low == pytest.approx(90 / 110) and high == pytest.approx(90 / 110)
    mixed = np.stack([np.array([[90, 10], [10, 90]]), np.array([[50, 50], [50, 50]])] * 2)
    low, high = estimate_interval(mixed, known, totals, 0.9)
    assert 50 / 150 <= low < high <= 90 / 110
    # what people labelled counts as right: the interval narrows towards 1 as they label more
    low2, high2 = estimate_interval(mixed, np.array([900.0, 900.0]), totals, 0.9)
    assert low2 > low and high2 - low2 < high - low


def test_each_frame_estimate_counts_labelled_pixels_right_and_the_rest_at_their_class_quality():
    from hvsa.method.auto import frame_estimates

    probs = torch.zeros(2, 2, 4, 4)
    probs[:, 0] = 0.8
    probs[:, 1] = 0.2
    human = np.full((2, 4, 4), 255, np.uint8)
    human[1, :2] = 0  # half of frame 1 labelled by people
    by_belief = frame_estimates(None, probs, human)
    assert by_belief[0] == pytest.approx(0.8) and by_belief[1] == pytest.approx(0.9)
    quality = np.array([0.5, np.nan])  # class 1 never seen on a probe: left out
    by_quality = frame_estimates(quality, probs, human)
    assert by_quality[0] == pytest.approx(0.5)
    assert by_quality[1] == pytest.approx((8 + 0.5 * 8 * 0.8) / (8 + 8 * 0.8))


def test_without_ground_truth_the_stop_rule_holds_the_interval_low_end_to_the_target():
    from hvsa.rounds.rules import stop_reason
    from tests.conftest import tiny_config

    cfg = tiny_config(**{"loop.target_miou": 0.9, "loop.rounds": 50})
    m = {"round": 3, "miou": None, "clicks_total": 10, "samples": 1, "miou_estimate": 0.93}
    assert stop_reason(m | {"miou_interval": [0.88, 0.95]}, cfg) is None
    assert "at least 0.910" in stop_reason(m | {"miou_interval": [0.91, 0.95]}, cfg)
    assert "estimated mIoU of 0.930" in stop_reason(m | {"miou_interval": None}, cfg)
