"""A user's own video with no pretrained network: `hvsa run` and `hvsa campaign init` without
`--model` start from a network that knows nothing, built for the video's class list."""

import json
import shutil

import numpy as np
import torch

from hvsa.campaign.lifecycle import init_workspace
from hvsa.cli import main
from hvsa.config import load_config
from hvsa.data.scaling import spread_frames
from hvsa.data.video import load_video, read_classes_file
from hvsa.method.network import SegmentationNet, load_checkpoint, normalise_on
from hvsa.rounds.rules import start_network

FAST = ["--set", "finetune.steps=5", "--set", "model.train_crop=null", "--set",
        "model.device=cpu", "--set", "samples.rect_size=16"]  # fmt: skip


def test_run_without_a_model_starts_from_nothing_and_resumes_from_the_same(tiny_videos, tmp_path,
                                                                           capsys):  # fmt: skip
    out = tmp_path / "run"
    argv = ["run", str(tiny_videos[0]), "--out", str(out), "--granularity", "frame",
            "--budget", "1", "--rounds", "2", *FAST]  # fmt: skip
    assert main(argv) == 0
    assert "no --model: starting from a network that knows nothing" in capsys.readouterr().out
    model, classes, meta = load_checkpoint(out / "start_model.pt", torch.device("cpu"))
    assert meta["fresh"] is True
    assert classes == load_video(tiny_videos[0]).classes
    first = model.net.backbone["0"][1]  # the stem's BatchNorm: taken from the video's frames
    assert first.running_mean.abs().max() > 0.01 and (first.running_var - 1).abs().max() > 0.01
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2
    # its uncertainty says nothing yet: the first frames are placed by distance alone
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings["selection.spread_frames"] == settings["selection.spread_from_nothing"] > 0
    # a network that knows nothing is near chance; the carried human labels lift the video
    assert summary["miou_final"] > summary["miou_start"] + 0.2
    started = (out / "start_model.pt").read_bytes()
    # one round more in the same folder: resumed from the same starting network, not a new one
    argv[argv.index("--rounds") + 1] = "3"
    assert main(argv) == 0
    assert "resuming the run" in capsys.readouterr().out
    assert (out / "start_model.pt").read_bytes() == started
    assert json.loads((out / "summary.json").read_text())["rounds"] == 3


def test_the_class_list_comes_from_classes_or_the_error_names_it(tiny_videos, tmp_path, capsys):
    video = tmp_path / "own" / "video"
    shutil.copytree(tiny_videos[0] / "frames", video / "frames")  # no labels, no classes.json
    argv = ["campaign", "init", str(tmp_path / "out"), "--video", f"v={video}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--classes FILE" in err[0] and "no classes.json" in err[0]
    assert not (tmp_path / "out").exists()
    # with --classes, a workspace starts from a network for exactly that list
    listed = tiny_videos[0] / "classes.json"
    ws = init_workspace(tmp_path / "ws", "own", None, {"v": str(video)}, classes_file=listed)
    _, classes, meta = load_checkpoint(ws.root / "data" / "pretrained.pt", torch.device("cpu"))
    assert meta["fresh"] is True and classes == read_classes_file(listed)[0]
    assert ws.cfg.selection.spread_frames == ws.cfg.selection.spread_from_nothing


def test_campaign_init_without_a_model_uses_the_videos_classes(tiny_videos, tmp_path, capsys):
    root = tmp_path / "ws"
    argv = ["campaign", "init", str(root), "--video", f"a={tiny_videos[0]}", "--video",
            f"b={tiny_videos[1]}"]  # fmt: skip
    assert main(argv) == 0
    model, classes, meta = load_checkpoint(root / "data" / "pretrained.pt", torch.device("cpu"))
    assert meta["fresh"] is True and classes == load_video(tiny_videos[0]).classes
    # its BatchNorm statistics come from frames of both videos, as the rule for a start says
    videos = [load_video(tiny_videos[0]), load_video(tiny_videos[1])]
    again, _, _ = load_checkpoint(
        start_network(tmp_path / "again.pt", videos, classes, load_config(None)),
        torch.device("cpu"),
    )
    for name, value in again.state_dict().items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_the_estimate_without_truth_comes_from_hidden_labelled_frames(tiny_videos, pretrained,
                                                                      tmp_path):  # fmt: skip
    out = tmp_path / "run"
    argv = ["run", str(tiny_videos[0]), "--model", str(pretrained), "--out", str(out),
            "--granularity", "frame", "--budget", "2", "--rounds", "3", "--selector", "coverage",
            "--set", "fusion.calibration_probes=2", *FAST]  # fmt: skip
    assert main(argv) == 0
    rounds = [json.loads((out / f"round_{r:02d}" / "metrics.json").read_text()) for r in range(4)]
    assert [m["miou_estimate_from"] for m in rounds] == ["belief"] + ["leave-one-out"] * 3
    # the belief calibrated on hidden labelled frames: near the truth (CamVid: within 1.3
    # points, RESULTS.md), and the interval's low end below it
    for m in rounds[1:]:
        assert m["miou"] - 0.15 < m["miou_estimate"] < m["miou"] + 0.02, m
        assert m["miou_interval"][0] <= m["miou_estimate"] <= m["miou_interval"][1]
        assert set(m["per_class_estimate"]) == set(m["per_class"])


def test_start_frames_are_spread_through_every_video_by_length():
    long = np.zeros((30, 40, 60, 3), np.uint8) + np.arange(30, dtype=np.uint8)[:, None, None, None]
    short = np.zeros((10, 20, 20, 3), np.uint8)
    picked = spread_frames([long, short], 8, 0.5)
    assert [tuple(t.shape) for t in picked] == [(6, 3, 32, 32), (2, 3, 32, 32)]
    assert picked[0][:, 0, 0, 0].tolist() == [0, 6, 12, 17, 23, 29]  # ends included
    assert [len(t) for t in spread_frames([long, short], 1000, 1.0)] == [30, 10]
    assert [len(t) for t in spread_frames([long, short], 1, 1.0)] == [1, 1]  # one each at least


def test_normalise_on_takes_batchnorm_statistics_from_the_frames():
    """Every BatchNorm layer ends with its inputs' mean and (unbiased) variance averaged over
    every batch of the frames given; the network is left in eval mode, momenta untouched."""
    torch.manual_seed(0)
    model = SegmentationNet("lraspp_mobilenet_v3_large", 3)
    frames = [torch.rand(5, 3, 64, 64) * 255, torch.rand(3, 3, 48, 80) * 255]
    seen = []
    stem = model.net.backbone["0"]
    hook = stem[0].register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    normalise_on(model, frames, batch_size=2)
    hook.remove()
    assert not model.training and stem[1].momentum == 0.01  # MobileNetV3's own
    # momentum None: each statistic is the average over the batches of the batch's own
    means = torch.stack([o.mean((0, 2, 3)) for o in seen])
    variances = torch.stack([o.permute(1, 0, 2, 3).flatten(1).var(1) for o in seen])
    assert torch.allclose(stem[1].running_mean, means.mean(0), atol=1e-5)
    assert torch.allclose(stem[1].running_var, variances.mean(0), rtol=1e-4)
    assert stem[1].num_batches_tracked == 5  # 5 frames in 3 batches of 2, then 3 in 2
