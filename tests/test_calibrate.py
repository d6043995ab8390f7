import json

import numpy as np
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
