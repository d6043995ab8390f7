import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from hvsa.annotation.annotator import OracleAnnotator
from hvsa.annotation.ledger import Ledger
from hvsa.benchmark.runner import parse_strategy
from hvsa.campaign.lifecycle import init_workspace
from hvsa.cli import main
from hvsa.data.video import VOID, load_video
from hvsa.errors import HvsaError
from hvsa.method.class_layers import apply_layers, choose_layers, class_costs, doubt
from hvsa.method.clicks import layer_clicks
from hvsa.method.network import load_checkpoint
from hvsa.rounds.state import LoopState
from hvsa.rounds.steps import layer_drawer
from tests.conftest import run_args


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


def test_a_frame_with_a_layer_of_every_class_keeps_its_void_pixels_finite():
    probs = np.full((2, 1, 3), 0.5, np.float32)
    layer = np.array([[0, 1, VOID]], np.uint8)  # the last pixel is void in the truth
    out = apply_layers(probs, layer, np.array([True, True]))
    assert np.isfinite(out).all()
    assert out[:, 0, 0].tolist() == [1, 0] and out[:, 0, 1].tolist() == [0, 1]
    assert out[:, 0, 2].tolist() == [0.5, 0.5], "nothing to go by: left as it was"


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
    picked = choose_layers(quality, cost, doubts, eligible, 4, order="class")
    assert picked == [(1, 2), (0, 2), (2, 2), (2, 1)]
    assert all(c != 3 for _, c in choose_layers(quality, cost, doubts, eligible, 20, "class"))


def test_layers_by_layer_weigh_each_frame_by_its_share_of_the_class_doubt():
    quality = np.array([0.5, 0.5, np.nan])
    cost = np.array([10.0, 10.0, 1.0])  # both classes worth .05 a click, the third unknown
    # class 0's doubt lies almost all in frame 0; class 1's is spread over three frames
    doubts = np.array([[9, 3, 5], [1, 3, 5], [0, 3, 5]], float)
    eligible = np.ones((3, 3), bool)
    by_layer = choose_layers(quality, cost, doubts, eligible, 5, order="layer")
    # frame 0 holds .9 of class 0's doubt (.045 a click), each frame a third of class 1's
    # (.017), frame 1 a tenth of class 0's (.005)
    assert by_layer == [(0, 0), (0, 1), (1, 1), (2, 1), (1, 0)]
    assert choose_layers(quality, cost, doubts, eligible, 5, order="class") == [
        (0, 0), (1, 0), (2, 0), (0, 1), (1, 1)]  # fmt: skip
    # a layer given is never asked again; an unknown class never asked
    eligible[0, 0] = False
    everything = choose_layers(quality, cost, doubts, eligible, 20, order="layer")
    assert (0, 0) not in everything and len(everything) == 5
    assert all(c != 2 for _, c in everything)


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


def test_an_annotator_that_cannot_draw_layers_is_refused():
    class Human:
        name = "human"

    with pytest.raises(HvsaError, match="cannot draw class layers"):
        layer_drawer(Human())


def test_benchmark_strategies_take_a_layers_suffix_on_frames_only():
    s = parse_strategy("hvsa-frame-coverage-b2-layers")
    assert (s.selector, s.budget, s.layers) == ("coverage", 2, True)
    assert parse_strategy("hvsa-frame-coverage").layers is False
    with pytest.raises(HvsaError, match="needs whole frames"):
        parse_strategy("hvsa-rect32-paper-layers")


def test_runs_and_campaigns_refuse_layers_they_could_not_use(
    tiny_videos, pretrained, tmp_path, capsys
):
    args = run_args(tiny_videos[0], pretrained, tmp_path / "r", "rect", 4, rounds=1)
    assert main([*args, "--set", "layers.enabled=true"]) != 0
    assert "needs whole frames" in capsys.readouterr().err
    args = run_args(tiny_videos[0], pretrained, tmp_path / "f", "frame", 1, rounds=1)
    assert main([*args, "--set", "layers.enabled=true", "--set", "fusion.enabled=false"]) != 0
    assert "needs fusion.enabled" in capsys.readouterr().err
    assert not (tmp_path / "f" / "round_01").exists(), "refused before any round"
    with pytest.raises(HvsaError, match="needs whole frames"):  # the same rule in campaigns
        overrides = {"layers.enabled": True, "samples.granularity": "rect"}
        init_workspace(tmp_path / "ws", "c", pretrained, {"cam": str(tiny_videos[0])},
                       overrides=overrides)  # fmt: skip
    assert not (tmp_path / "ws").exists()


def test_a_round_state_saved_before_layers_existed_loads_without_any(tmp_path):
    state = LoopState.empty(2, (4, 5))
    state.save(tmp_path / "new.npz")
    old = {
        k: v for k, v in np.load(tmp_path / "new.npz").items() if k not in ("layers", "complete")
    }
    np.savez(tmp_path / "old.npz", **old)
    loaded = LoopState.load(tmp_path / "old.npz")
    assert loaded.complete == set() and (loaded.layers == VOID).all()
    assert loaded.layers.shape == (2, 4, 5)


def test_a_run_with_layers_labels_weak_classes_frame_by_frame(tiny_videos, pretrained, tmp_path):
    out = tmp_path / "layers"
    args = run_args(tiny_videos[0], pretrained, out, "frame", 1, rounds=4)
    sets = ["--set", "finetune.steps=2", "--set", "fusion.calibration_probes=2",
            "--set", "layers.enabled=true", "--set", "layers.per_round=5",
            "--target-miou", "0.999"]  # fmt: skip
    assert main([*args, *sets]) == 0
    video = load_video(tiny_videos[0])
    truth = video.labels
    kinds = [pd.read_parquet(out / f"round_{r:02d}" / "selected.parquet")["kind"].unique().tolist()
             for r in (1, 2, 3, 4)]  # fmt: skip
    assert kinds == [["frame"], ["frame"], ["layer"], ["layer"]], "layers wait for 2 full frames"
    state = LoopState.load(out / "round_04" / "human.npz")
    full = state.annotated.reshape(len(truth), -1).all(1)
    assert full.sum() == 2 and len(state.complete) == 10
    labels = np.stack(
        [cv2.imread(str(out / "round_04" / "labels" / f"{n}.png"), cv2.IMREAD_UNCHANGED)
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
    assert (layers["sample_id"] < 0).all(), "a layer's id never reads as a sample's"
    for _, e in layers.iterrows():
        cls = e["geometry"]["segment"]
        assert e["geometry"]["class"] == video.classes.names[cls]
        assert e["clicks"] == layer_clicks(truth[e["frame"]], cls, 2.0).total
    assert int(events["clicks"].sum()) == state.clicks_total
    before, _, _ = load_checkpoint(out / "round_02" / "model.pt", "cpu")
    after, _, _ = load_checkpoint(out / "round_04" / "model.pt", "cpu")
    for a, b in zip(before.state_dict().values(), after.state_dict().values(), strict=True):
        assert torch.equal(a, b), "a layer round does not fine-tune: a layer teaches nothing"
    assert OracleAnnotator(2.0).annotate_layers(video, [(0, 1)], 4)[0].layer_class == 1


def test_class_layer_clicks_count_for_their_class_in_the_audit(tmp_path):
    from hvsa.annotation.annotator import Annotation
    from hvsa.annotation.audit import audit_summary
    from hvsa.data.synth import CLASSES
    from hvsa.method.clicks import ClickCount
    from hvsa.rounds.steps import ledger_events

    class Clip:
        frame_names = ["a"]

    absent = np.full((4, 4), VOID, np.uint8)
    drawn = absent.copy()
    drawn[1:3, 1:3] = 1
    box = (slice(0, 4), slice(0, 4))
    annotations = [
        Annotation(-1, 0, box, absent, ClickCount(1, 0, 0), "oracle", "class-layer", 0, 0,
                   layer_class=0),
        Annotation(-2, 0, box, drawn, ClickCount(1, 4, 0), "oracle", "class-layer", 0, 0,
                   layer_class=1),
    ]  # fmt: skip
    events = ledger_events(annotations, None, Clip(), CLASSES, "c", "v", 1)
    assert {e.idempotency_key.split("/")[-2] for e in events} == {"layer0-0", "layer0-1"}
    run = tmp_path / "run"
    (run / "round_01").mkdir(parents=True)
    LoopState.empty(1, (4, 4)).save(run / "round_01" / "human.npz")
    (run / "round_01" / "metrics.json").write_text("{}")
    with Ledger(run / "ledger.sqlite") as ledger:
        first = ledger.append(events)
        assert ledger.append(events) == first, "a replayed layer round records nothing twice"
        assert ledger.count(kind="annotation") == 2
    per_class = audit_summary(run, "ledger.sqlite")["class"]["clicks"]
    assert per_class[CLASSES.names[0]] == 1, "finding a class absent is charged to that class"
    assert per_class[CLASSES.names[1]] == 5


def test_layers_of_no_doubt_go_to_the_worthier_class_first_and_an_unknown_order_is_refused():
    quality = np.array([0.5, 0.2])
    cost = np.array([10.0, 10.0])  # worth .05 and .08 a click
    doubts = np.zeros((2, 2))  # nothing doubted: every layer's share is 0
    picked = choose_layers(quality, cost, doubts, np.ones((2, 2), bool), 3, order="layer")
    assert picked == [(0, 1), (1, 1), (0, 0)]
    with pytest.raises(ValueError, match="layers.order"):
        choose_layers(quality, cost, doubts, np.ones((2, 2), bool), 3, order="frame")
