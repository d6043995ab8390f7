import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from hvsa.annotator import OracleAnnotator
from hvsa.benchmark import parse_strategy
from hvsa.cli import main
from hvsa.clicks import layer_clicks
from hvsa.errors import HvsaError
from hvsa.layers import apply_layers, choose_layers, class_costs, doubt
from hvsa.ledger import Ledger
from hvsa.network import load_checkpoint
from hvsa.rounds import annotate_layers
from hvsa.state import LoopState
from hvsa.video import VOID, load_video
from tests.test_end_to_end import _run_args


def test_a_layer_makes_its_class_certain_where_drawn_and_impossible_elsewhere():
    probs = np.zeros((3, 2, 3), np.float32)
    probs[0] = 0.2
    probs[1] = 0.7
    probs[2] = 0.1
    probs[:, 1, 2] = [0, 1, 0]  # only class 1 had any mass here
    layer = np.full((2, 3), VOID, np.uint8)
    layer[0, 0] = 1
    out = apply_layers(probs, layer, np.array([False, True, False]))
    assert out[:, 0, 0].tolist() == [0, 1, 0]
    rest = np.ones((2, 3), bool)
    rest[0, 0] = False
    assert (out[1][rest] == 0).all()
    np.testing.assert_allclose(out.sum(0), 1, rtol=1e-6)
    assert out[:, 0, 1].argmax() == 0, "class 1's mass goes to the next most likely class"
    assert out[0, 1, 2] == pytest.approx(0.5), "a pixel left with nothing is split evenly"
    same = apply_layers(probs, layer, np.zeros(3, bool))
    assert same is probs, "no layer given: the frame is untouched"


def test_a_layer_is_charged_like_the_frame_rule_for_its_class_alone():
    labels = np.zeros((12, 12), np.uint8)
    labels[4:8, 4:8] = 1  # a square fully inside: 1 region + 4 corners
    labels[:, 11] = 2  # a strip along the right edge: 1 region, no inner vertex, its border
    # crosses the top and the bottom edge (2), as in a whole frame's count
    assert layer_clicks(labels, 1, 2.0).total == 5
    assert layer_clicks(labels, 2, 2.0).total == 3
    assert layer_clicks(labels, 3, 2.0).total == 1, "saying a class is absent is one click"


def test_layers_go_to_the_class_with_most_to_win_per_click_then_by_doubt():
    quality = np.array([0.95, 0.5, 0.6, np.nan])
    cost = np.array([10.0, 20.0, 4.0, 1.0])  # worth: .005, .025, .1, unknown
    doubts = np.array([[1, 1, 3, 9], [1, 1, 5, 9], [1, 9, 1, 9]], float)
    eligible = np.ones((3, 4), bool)
    eligible[1, 1] = False
    picked = choose_layers(quality, cost, doubts, eligible, 4)
    assert picked == [(1, 2), (0, 2), (2, 2), (2, 1)]
    assert all(c != 3 for _, c in choose_layers(quality, cost, doubts, eligible, 20))


def test_class_costs_come_from_frames_labelled_in_full():
    human = np.full((3, 12, 12), VOID, np.uint8)
    human[0] = 0
    human[0, 4:8, 4:8] = 1
    human[2, :6] = 2  # a partly labelled frame says nothing of prices
    cost = class_costs(human, np.array([True, False, False]), 3, 2.0)
    assert cost[1] == 5
    assert np.isnan(cost[2]), "a class no full frame shows has no price"
    beliefs = torch.tensor([[[[0.5]], [[1.0]]]])
    assert doubt(beliefs).tolist() == [[0.25, 0.0]]


def test_only_the_oracle_draws_layers(tiny_videos):
    class Human:
        name = "human"

    with pytest.raises(HvsaError, match="cannot draw class layers"):
        annotate_layers(None, [(0, 1)], Human(), None, None)


def test_benchmark_strategies_take_a_layers_suffix():
    s = parse_strategy("hvsa-frame-coverage-b2-layers")
    assert (s.selector, s.budget, s.layers) == ("coverage", 2, True)
    assert parse_strategy("hvsa-frame-coverage").layers is False


def test_a_run_with_layers_labels_weak_classes_frame_by_frame(tiny_videos, pretrained, tmp_path):
    out = tmp_path / "layers"
    args = _run_args(tiny_videos[0], pretrained, out, "frame", 2, rounds=3)
    sets = ["--set", "finetune.steps=2", "--set", "fusion.calibration_probes=2",
            "--set", "layers.enabled=true", "--set", "layers.per_round=5",
            "--target-miou", "0.999"]  # fmt: skip
    assert main([*args, *sets]) == 0
    video = load_video(tiny_videos[0])
    truth = video.labels
    selected = pd.read_parquet(out / "round_02" / "selected.parquet")
    assert (selected["kind"] == "layer").all() and len(selected) == 5
    assert (pd.read_parquet(out / "round_01" / "selected.parquet")["kind"] == "frame").all()
    state = LoopState.load(out / "round_03" / "human.npz")
    full = state.annotated.reshape(len(truth), -1).all(1)
    assert full.sum() == 2, "rounds after the first two frames send layers, not frames"
    assert len(state.complete) == 10
    labels = np.stack(
        [cv2.imread(str(out / "round_03" / "labels" / f"{n}.png"), cv2.IMREAD_UNCHANGED)
         for n in video.frame_names]
    )  # fmt: skip
    for frame, cls in state.complete:
        assert not full[frame]
        assert ((labels[frame] == cls) == (truth[frame] == cls)).all(), "the layer's class is exact"
        drawn = truth[frame] == cls
        assert (state.provenance[frame][drawn] > 0).all(), "its pixels trace to the ledger"
    with Ledger(out / "ledger.sqlite") as ledger:
        events = ledger.frame(kind="annotation")
    layers = events[[g["kind"] == "layer" for g in events["geometry"]]]
    assert len(layers) == 10 and (layers["tool"] == "class-layer").all()
    assert int(events["clicks"].sum()) == state.clicks_total
    before, _, _ = load_checkpoint(out / "round_01" / "model.pt", "cpu")
    after, _, _ = load_checkpoint(out / "round_03" / "model.pt", "cpu")
    for a, b in zip(before.state_dict().values(), after.state_dict().values(), strict=True):
        assert torch.equal(a, b), "a layer round does not fine-tune: a layer teaches nothing"
    assert OracleAnnotator(2.0).annotate_layers(video, [(0, 1)], 4)[0].layer_class == 1
