import json
import re

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from hvsa.cli import main
from hvsa.data.video import VOID
from hvsa.method.auto import (
    AutoChooser,
    Offer,
    estimated_iou,
    known_pixels,
    promise,
    region_class_pixels,
)
from hvsa.method.gain import expected_clicks, pixel_gain, sample_gain, select_gain
from hvsa.method.metrics import mean_iou
from hvsa.method.network import load_checkpoint
from hvsa.method.samples import rect_segments
from tests.conftest import REPO, run_args, tiny_config


def _probs(c0_share: float, torn: tuple[int, int], where: tuple[int, int]) -> torch.Tensor:
    """A 1×3×10×10 belief: class 0 covers ``c0_share`` of the frame, the rest class 1 (common),
    and the pixel ``where`` is torn 50/50 between the classes ``torn``."""
    p = torch.zeros(1, 3, 10, 10)
    cols = int(10 * c0_share)
    p[0, 0, :, :cols] = 1
    p[0, 1, :, cols:] = 1
    y, x = where
    p[0, :, y, x] = 0
    p[0, torn[0], y, x] = p[0, torn[1], y, x] = 0.5
    return p


def test_a_pixel_torn_between_rare_classes_is_worth_more():
    rare = pixel_gain(_probs(0.1, (0, 2), (5, 5)))[0, 5, 5]
    torn_common = pixel_gain(_probs(0.1, (1, 2), (5, 5)))[0, 5, 5]
    assert rare > torn_common > 0
    certain = pixel_gain(_probs(0.1, (1, 2), (5, 5)))[0, 2, 7]
    assert certain == 0
    assert (pixel_gain(_probs(0.1, (0, 2), (5, 5))) >= 0).all()


def test_sample_gain_sums_over_each_sample():
    gain = np.zeros((2, 4, 4))
    gain[1, :2, :2] = 1.0  # sample 0 of frame 1
    segments = np.stack([rect_segments((4, 4), 2)] * 2)
    table = pd.DataFrame({"frame": [0] * 4 + [1] * 4, "segment": list(range(4)) * 2})
    out = sample_gain(gain, segments, table, np.arange(8))
    assert out.tolist() == [0, 0, 0, 0, 4, 0, 0, 0]


def test_expected_clicks_follow_the_click_model():
    predicted = np.zeros((1, 6, 6), np.uint8)
    predicted[0, :, 3:] = 1  # the README's 6×6 road/car example: 4 clicks
    table = pd.DataFrame({"frame": [0], "x0": [0], "y0": [0], "x1": [6], "y1": [6]})
    assert expected_clicks(predicted, table, np.array([0]), (6, 6), "rect", 2.0).tolist() == [4]
    # at half the working size the box is scaled up before counting
    small = predicted[:, ::2, ::2]
    assert expected_clicks(small, table, np.array([0]), (6, 6), "rect", 2.0).tolist() == [4]
    assert expected_clicks(predicted, table, np.array([0]), (6, 6), "superpixel", 2.0)[0] == 1


def test_select_gain_prefers_cheap_heavy_samples_and_prices_only_a_pool():
    gain = np.array([10.0, 9.0, 1.0, 0.5])
    prices = np.array([100.0, 3.0, 1.0, 1.0])
    asked = []

    def cost_of(idx):
        asked.append(sorted(idx.tolist()))
        return prices[idx]

    picked, cost = select_gain(gain, cost_of, budget=1, pool=2)
    assert picked.tolist() == [1] and cost.tolist() == [3.0]
    assert asked == [[0, 1]]  # samples 2 and 3 were never priced


def test_the_loop_runs_with_the_gain_selector(tiny_videos, pretrained, tmp_path):
    out = tmp_path / "gain"
    args = run_args(tiny_videos[0], pretrained, out, "rect", 6, rounds=1)
    assert main([*args, "--selector", "gain", "--set", "finetune.steps=2"]) == 0
    selected = pd.read_parquet(out / "round_01" / "selected.parquet")
    assert len(selected) == 6
    assert (selected["expected_clicks"] >= 1).all() and (selected["expected_gain"] >= 0).all()
    ratio = selected["expected_gain"] / selected["expected_clicks"]
    assert ratio.is_monotonic_decreasing
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clicks"] > 0


@pytest.mark.parametrize("per_click", ["false", "true"])
def test_the_loop_runs_with_the_coverage_selector(tiny_videos, pretrained, tmp_path, per_click):
    out = tmp_path / "coverage"
    args = run_args(tiny_videos[0], pretrained, out, "rect", 6, rounds=1)
    sets = ["--set", "finetune.steps=2", "--set", f"selection.coverage_per_click={per_click}"]
    assert main([*args, "--selector", "coverage", *sets]) == 0
    selected = pd.read_parquet(out / "round_01" / "selected.parquet")
    assert len(selected) == 6 and selected["sample_id"].is_unique
    # a batch of rectangles covering one 8-frame video is not piled into a single frame
    assert selected["frame"].nunique() > 1
    assert json.loads((out / "summary.json").read_text())["clicks"] > 0


def test_spread_frames_places_the_first_frames_evenly(tiny_videos, pretrained, tmp_path):
    """``selection.spread_frames``: while fewer frames than that are labelled in full, the
    coverage selector's whole frames go where every frame is nearest a label (8 frames, 2 a
    round: 2 and 6), then coverage picks again."""
    out = tmp_path / "spread"
    args = run_args(tiny_videos[0], pretrained, out, "frame", 2, rounds=2)
    sets = ["--set", "finetune.steps=2", "--set", "selection.spread_frames=2"]
    assert main([*args, "--selector", "coverage", *sets]) == 0
    first = pd.read_parquet(out / "round_01" / "selected.parquet")
    assert sorted(first["frame"].tolist()) == [2, 6]
    second = pd.read_parquet(out / "round_02" / "selected.parquet")
    assert len(second) == 2 and not set(second["frame"]) & {2, 6}


def test_auto_sends_frames_until_it_can_price_then_the_offer_worth_most(
    tiny_videos, pretrained, tmp_path
):
    out = tmp_path / "auto"
    args = run_args(tiny_videos[0], pretrained, out, "rect", 6, rounds=4)
    sets = ["auto.granularities=[frame, rect16, layers]", "auto.budgets={frame: 1, rect16: 6}",
            "fusion.calibration_probes=2", "layers.per_round=3", "finetune.steps=2"]  # fmt: skip
    argv = [*args, "--granularity", "auto", "--target-miou", "0.999"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    chosen = [pd.read_parquet(out / f"round_{r:02d}" / "selected.parquet") for r in (1, 2, 3, 4)]
    # nothing to price against until 2 frames are labelled in full: frames, one a round
    for selected in chosen[:2]:
        assert set(selected["granularity"]) == {"frame"} and len(selected) == 1
        assert "promise_frame" not in selected
    sizes = {"frame": 1, "rect16": 6, "layers": 3}
    for selected in chosen[2:]:
        (name,) = set(selected["granularity"])
        row = selected.iloc[0]
        worth = {
            g: row[f"promise_{g}"] * (1.0 if np.isnan(row[f"yield_{g}"]) else row[f"yield_{g}"])
            for g in sizes
            if f"promise_{g}" in selected
        }
        assert set(worth) == set(sizes), "every kind made an offer"
        assert name == max(worth, key=worth.get), "the best calibrated offer won"
        assert len(selected) == sizes[name]
        assert 0 < row["estimated_miou"] <= 1
    third = chosen[2].iloc[0]
    assert not np.isnan(chosen[3].iloc[0][f"yield_{third['granularity']}"]), (
        "round 3 taught what its kind yields"
    )
    for r in (3, 4):  # a layer round keeps the network: a layer teaches nothing
        if set(chosen[r - 1]["granularity"]) == {"layers"}:
            before, _, _ = load_checkpoint(out / f"round_{r - 1:02d}" / "model.pt", "cpu")
            after, _, _ = load_checkpoint(out / f"round_{r:02d}" / "model.pt", "cpu")
            pairs = zip(before.state_dict().values(), after.state_dict().values(), strict=True)
            assert all(torch.equal(a, b) for a, b in pairs)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["granularity"] == "auto" and summary["clicks"] > 0


def test_auto_refuses_kinds_it_could_not_price_or_send(tiny_videos, pretrained, tmp_path, capsys):
    args = run_args(tiny_videos[0], pretrained, tmp_path / "a", "rect", 6, rounds=1)
    argv = [*args, "--granularity", "auto"]
    refusals = {
        "auto.granularities=[rect16]": "must list frame",
        "auto.granularities=[frame, layer]": "unknown kind 'layer'",
        "auto.granularities=[frame, rect24]": "at least 1 sample a round for rect24",
        "auto.budgets={frame: 0, rect32: 150}": "at least 1 sample a round for frame",
        "fusion.enabled=false": "needs fusion.enabled",
        "layers.enabled=true": "list layers in auto.granularities",
    }
    for setting, message in refusals.items():
        extra = ["--set", "auto.granularities=[frame]"] if setting.startswith("layers") else []
        assert main([*argv, *extra, "--set", setting]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "a" / "round_01").exists(), "refused before any round"


def test_the_estimate_counts_labelled_pixels_right_and_the_rest_at_their_quality():
    quality = np.array([0.5, 1.0, np.nan])  # class 2: never seen on a probe, not weighed
    totals = np.array([100.0, 300.0, 10.0])
    assert mean_iou(estimated_iou(quality, np.zeros(3), totals)) == pytest.approx(0.75)
    labelled = np.array([50.0, 0, 0])
    assert mean_iou(estimated_iou(quality, labelled, totals)) == pytest.approx(0.875)
    # labelling 50 px of class 0 promises (1 - .5) * 50/100 over the 2 weighed classes: exactly
    # the rise of the estimate, so a batch that delivers its promise yields 1
    assert promise(quality, labelled, totals) == pytest.approx(0.875 - 0.75)
    chooser = AutoChooser()
    chooser.choose({"frame": Offer(promise(quality, labelled, totals), 10)},
                   estimated_iou(quality, np.zeros(3), totals))  # fmt: skip
    assert chooser.settle(estimated_iou(quality, labelled, totals)) == pytest.approx(1.0)
    human = np.full((1, 2, 2), 255, np.uint8)
    human[0, 0] = [0, 1]
    layers = np.full((1, 2, 2), 255, np.uint8)
    layers[0, 1, 1] = 2
    layers[0, 0, 0] = 0  # also labelled by a human: counted once
    assert known_pixels(human, layers, 3).tolist() == [1.0, 1.0, 1.0]


def test_region_class_pixels_sums_the_belief_over_each_sample_even_one_shrunk_away():
    probs = torch.zeros(1, 2, 2, 2)
    probs[0, 0] = 1.0
    probs[0, :, 1, 1] = torch.tensor([0.25, 0.75])
    segments = np.array([[[0, 0], [1, 1]]])
    out = region_class_pixels(probs, segments, np.array([0, 0, 0]), np.array([1, 0, 2]))
    assert out.tolist() == [[1.25, 0.75], [2.0, 0.0], [0.0, 0.0]]


def test_auto_takes_an_untried_offer_at_its_word_then_trusts_what_it_delivered():
    def ious(value: float) -> np.ndarray:  # one weighed class, one never weighed
        return np.array([value, np.nan])

    chooser = AutoChooser()
    offers = {"frame": Offer(gain=0.04, clicks=1600), "layers": Offer(gain=0.02, clicks=1000)}
    assert chooser.choose(offers, ious(0.80)) == "frame"  # 2.5e-5 per click against 2e-5
    assert chooser.settle(ious(0.81)) == pytest.approx(0.25)  # promised .04, delivered .01
    assert chooser.choose(offers, ious(0.81)) == "layers"
    assert chooser.settle(ious(0.83)) == pytest.approx(1.0)
    # frames win again only once their calibrated worth beats the layers'
    later = {"frame": Offer(gain=0.16, clicks=1600), "layers": Offer(gain=0.02, clicks=1000)}
    assert chooser.choose(later, ious(0.83)) == "frame"  # 1e-4 x .25 against 2e-5 x 1
    assert chooser.settle(ious(0.82)) == 0.0  # a round after which the estimate fell: nothing
    assert chooser.settle(ious(0.95)) is None  # nothing pending
    chooser.choose(later, np.array([np.nan, 0.5]))
    assert chooser.settle(ious(0.95)) is None, "no class weighed both times: nothing learnt"
    # a class that enters the probes after the choice does not count as the batch's gain
    chooser.choose(later, np.array([0.90, np.nan]))
    assert chooser.settle(np.array([0.90, 0.10])) == 0.0
    chooser.choose({"frame": Offer(gain=0.0, clicks=10)}, ious(0.5))
    assert chooser.settle(ious(0.9)) is None, "a batch that promised nothing teaches nothing"


def test_with_learn_prices_auto_scales_a_kinds_clicks_by_what_its_last_batch_cost():
    def ious(value: float) -> np.ndarray:
        return np.array([value])

    chooser = AutoChooser(learn_prices=True)
    offers = {"frame": Offer(gain=0.04, clicks=1600), "layers": Offer(gain=0.02, clicks=1000)}
    assert chooser.choose(offers, ious(0.80), spent=0) == "frame"
    # the frames cost half what the click model expected (a corrector fixed the prefill)
    chooser.settle(ious(0.84), spent=800)
    assert chooser.prices == {"frame": 0.5}
    assert chooser.choose(offers, ious(0.84), spent=800) == "frame"  # 5e-5 against 2e-5
    chooser.settle(ious(0.85), spent=2400)  # full price this time, a quarter of the promise
    assert chooser.prices["frame"] == pytest.approx(1.0)
    assert chooser.choose(offers, ious(0.85), spent=2400) == "layers"
    # kept between rounds (a campaign's auto.json), with the bill of the pending batch
    again = AutoChooser.from_json(chooser.to_json())
    again.learn_prices = True
    again.settle(ious(0.86), spent=2900)
    assert again.prices == {"frame": pytest.approx(1.0), "layers": 0.5}
    # whole frames sent before anything can be estimated are billed and priced too
    early = AutoChooser(learn_prices=True)
    early.bill("frame", 1000, spent=0)
    assert early.settle_price(400) == pytest.approx(0.4) and early.settle_price(900) is None
    # without learn_prices the prices are recorded but do not count
    plain = AutoChooser(prices={"frame": 0.1})
    assert plain.worth("frame", offers["frame"]) == offers["frame"].per_click


def test_auto_is_no_sample_set_and_its_kinds_are_checked_in_campaigns_too(
    tiny_videos, pretrained, tmp_path
):
    from hvsa.campaign.lifecycle import init_workspace
    from hvsa.data.video import load_video
    from hvsa.errors import HvsaError
    from hvsa.method.samples import AUTO_IS_NO_SAMPLE_SET, build_samples, parse_granularity

    cfg = tiny_config(**{"samples.granularity": "auto"})
    with pytest.raises(HvsaError, match=re.escape(AUTO_IS_NO_SAMPLE_SET)):
        build_samples(load_video(tiny_videos[0]).frames, cfg.samples)
    with pytest.raises(HvsaError, match="unknown kind 'rect'"):
        init_workspace(tmp_path / "ws", "c", pretrained, {"cam": str(tiny_videos[0])},
                       overrides={"samples.granularity": "auto",
                                  "auto.granularities": ["frame", "rect"]})  # fmt: skip
    assert not (tmp_path / "ws").exists()
    assert parse_granularity("rect32") == ("rect", 32)
    with pytest.raises(HvsaError, match="rectN"):
        parse_granularity("rect")


def _spy_on_finetune(monkeypatch) -> list[dict]:
    """Record what the loop hands to fine-tuning each round (then fine-tune as usual)."""
    import hvsa.rounds.steps as steps

    calls, real = [], steps.finetune

    def spy(model, data, cfg, device, seed=0, crop=None):
        calls.append({"crop": crop, "labels": data.labels.clone(), "human": data.human_frames})
        return real(model, data, cfg, device, seed, crop)

    monkeypatch.setattr(steps, "finetune", spy)
    return calls


def test_the_loop_trains_on_crops_when_train_crop_is_set(
    tiny_videos, pretrained, tmp_path, monkeypatch
):
    calls = _spy_on_finetune(monkeypatch)
    out = tmp_path / "crop"
    args = run_args(tiny_videos[0], pretrained, out, "frame", 1, rounds=1)
    sets = ["--set", "finetune.steps=2", "--set", "model.train_crop=[32,48]"]
    assert main([*args, *sets]) == 0
    assert [c["crop"] for c in calls] == [(32, 48)], "fine-tuning is told the crop"
    labels = sorted((out / "round_01" / "labels").glob("*.png"))
    assert len(labels) == 8, "labels are still written for every frame at full size"
    assert cv2.imread(str(labels[0]), cv2.IMREAD_UNCHANGED).shape == (64, 80)
    assert main([*args, "--set", "model.train_crop=[16,48]"]) == 2, "a crop under 32 px is refused"


def test_pseudo_labels_fill_unlabelled_frames_but_never_overrule_a_human(tiny_videos, pretrained):
    from hvsa.config import load_config
    from hvsa.data.video import VOID, load_video
    from hvsa.method.motion import compute_flow
    from hvsa.method.network import load_checkpoint
    from hvsa.method.predict import predict
    from hvsa.method.samples import build_samples
    from hvsa.rounds.state import LoopState
    from hvsa.rounds.steps import VideoContext, teaching_labels

    cfg = load_config(REPO / "params.yaml", {"samples.granularity": "frame"})
    video = load_video(tiny_videos[0])
    model, classes, _ = load_checkpoint(pretrained, torch.device("cpu"))
    flow = compute_flow(video.frames, cfg.flow)
    ctx = VideoContext.build(video, classes, cfg, flow, build_samples(video.frames, cfg.samples))
    state = LoopState.empty(len(video), video.size)
    state.human[3] = video.labels[3]
    state.human[3, :4, :4] = VOID  # a void answer the human gave: it stays unlabelled
    state.annotated[3] = True
    pred = predict(model, ctx.frames_t, 8, torch.device("cpu"))
    plain = teaching_labels(ctx, state, cfg, lambda: pred)
    assert (plain[[0, 1, 2, 4, 5, 6, 7]] == VOID).all(), "no threshold: human labels only"
    cfg = cfg.model_copy(
        update={"finetune": cfg.finetune.model_copy(update={"pseudo_threshold": 0.5})}
    )
    taught = teaching_labels(ctx, state, cfg, lambda: pred)
    assert torch.equal(taught[3], plain[3]), "a human-labelled frame is taught as labelled"
    truth = torch.from_numpy(video.labels).long()
    near = taught[[2, 4]]
    filled = near != VOID
    assert filled.float().mean() > 0.5, "the neighbours of a labelled frame get carried labels"
    assert (near[filled] == truth[[2, 4]][filled]).float().mean() > 0.8, "and mostly right ones"


def test_the_loop_teaches_pseudo_labels_only_when_asked(
    tiny_videos, pretrained, tmp_path, monkeypatch
):
    calls = _spy_on_finetune(monkeypatch)
    for threshold in ("null", "0.5"):
        out = tmp_path / f"pseudo-{threshold}"
        args = run_args(tiny_videos[0], pretrained, out, "frame", 1, rounds=2)
        sets = ["--set", "finetune.steps=2", "--set", f"finetune.pseudo_threshold={threshold}"]
        assert main([*args, *sets]) == 0
        assert json.loads((out / "summary.json").read_text())["rounds"] == 2
    plain, taught = calls[:2], calls[2:]
    for call in plain + taught:  # the frames a human labelled: one a round
        labelled = (call["labels"] != VOID).flatten(1).any(1).numpy()
        assert set(call["human"]) <= set(np.flatnonzero(labelled))
    for call in plain:  # no threshold: only the human-labelled frames hold labels
        assert (call["labels"] != VOID).flatten(1).any(1).sum() == len(call["human"])
    for call in taught:  # pseudo-labels reach frames no human labelled
        assert (call["labels"] != VOID).flatten(1).any(1).sum() > len(call["human"])
