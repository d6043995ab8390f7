"""Loading videos, and the one-line errors a user gets for bad input."""

import shutil

import cv2
import numpy as np
import pytest

from hvsa.cli import main
from hvsa.data.synth import CLASSES, generate, write_video
from hvsa.data.video import VOID, load_video
from tests.conftest import CAMVID


def _error_of(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("hvsa: error: ")
    assert "Traceback" not in err
    return err


@pytest.fixture()
def video_copy(tiny_videos, tmp_path):
    dst = tmp_path / "video"
    shutil.copytree(tiny_videos[0], dst)
    return dst


def test_folder_with_labels_and_classes_loads(tiny_videos):
    video = load_video(tiny_videos[0])
    assert video.frames.shape == (8, 64, 80, 3)
    assert video.labels.shape == (8, 64, 80)
    assert video.classes == CLASSES
    assert video.frame_names[0] == "000000"


def test_video_file_is_read(tmp_path):
    frames = generate(5, 64, 80, seed=3)[0]
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (80, 64))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    video = load_video(path)
    assert video.frames.shape == (5, 64, 80, 3)
    assert video.labels is None


def test_dataset_void_id_becomes_255(tmp_path):
    frames, labels, classes = generate(2, 64, 80, seed=0)
    labels[:, :4] = 11
    out = write_video(tmp_path / "v", frames, labels, classes)
    (out / "classes.json").write_text(
        (out / "classes.json").read_text().replace('"void": 255', '"void": 11')
    )
    video = load_video(out)
    assert (video.labels[:, :4] == VOID).all()
    assert (video.labels[:, 4:] < len(classes)).all()


def test_missing_folder(capsys, tmp_path, pretrained):
    err = _error_of(
        capsys,
        ["run", str(tmp_path / "nope"), "--model", str(pretrained), "--out", str(tmp_path / "o")],
    )
    assert "not found" in err


def test_empty_folder(capsys, tmp_path, pretrained):
    (tmp_path / "empty").mkdir()
    err = _error_of(
        capsys,
        ["run", str(tmp_path / "empty"), "--model", str(pretrained), "--out", str(tmp_path / "o")],
    )
    assert "no frames" in err


def test_frames_of_different_sizes(capsys, video_copy, pretrained, tmp_path):
    cv2.imwrite(str(video_copy / "frames" / "000003.png"), np.zeros((30, 40, 3), np.uint8))
    err = _error_of(
        capsys, ["run", str(video_copy), "--model", str(pretrained), "--out", str(tmp_path / "o")]
    )
    assert "differ in size" in err and "000003" in err


def test_label_of_other_size(capsys, video_copy, pretrained, tmp_path):
    cv2.imwrite(str(video_copy / "labels" / "000002.png"), np.zeros((10, 10), np.uint8))
    err = _error_of(
        capsys, ["run", str(video_copy), "--model", str(pretrained), "--out", str(tmp_path / "o")]
    )
    assert "000002.png" in err and "10x10" in err


def test_label_value_outside_class_list(capsys, video_copy, pretrained, tmp_path):
    mask = np.zeros((64, 80), np.uint8)
    mask[5, 5] = 42
    cv2.imwrite(str(video_copy / "labels" / "000001.png"), mask)
    err = _error_of(
        capsys, ["run", str(video_copy), "--model", str(pretrained), "--out", str(tmp_path / "o")]
    )
    assert "42" in err and "outside the class list" in err


def test_unreadable_image(capsys, video_copy, pretrained, tmp_path):
    (video_copy / "frames" / "000004.png").write_bytes(b"not a png")
    err = _error_of(
        capsys, ["run", str(video_copy), "--model", str(pretrained), "--out", str(tmp_path / "o")]
    )
    assert "cannot read image" in err and "000004.png" in err


def test_checkpoint_classes_do_not_match(capsys, video_copy, pretrained, tmp_path):
    text = (video_copy / "classes.json").read_text().replace('"pole"', '"lamp"')
    (video_copy / "classes.json").write_text(text)
    err = _error_of(
        capsys, ["run", str(video_copy), "--model", str(pretrained), "--out", str(tmp_path / "o")]
    )
    assert "do not match" in err


def test_labels_beyond_checkpoint_classes_without_class_file(
    capsys, video_copy, pretrained, tmp_path
):
    (video_copy / "classes.json").unlink()
    mask = np.full((64, 80), 9, np.uint8)
    cv2.imwrite(str(video_copy / "labels" / "000001.png"), mask)
    err = _error_of(
        capsys, ["run", str(video_copy), "--model", str(pretrained), "--out", str(tmp_path / "o")]
    )
    assert "only 7 classes" in err


def test_not_a_checkpoint(capsys, tiny_videos, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    err = _error_of(
        capsys, ["run", str(tiny_videos[0]), "--model", str(bad), "--out", str(tmp_path / "o")]
    )
    assert "not an hvsa checkpoint" in err


def test_oracle_without_ground_truth(capsys, video_copy, pretrained, tmp_path):
    shutil.rmtree(video_copy / "labels")
    err = _error_of(
        capsys, ["run", str(video_copy), "--model", str(pretrained), "--out", str(tmp_path / "o")]
    )
    assert "oracle" in err and "ground truth" in err


def test_unknown_setting(capsys, tmp_path):
    err = _error_of(capsys, ["synth", str(tmp_path / "s"), "--set", "loop.nonsense=3"])
    assert "loop.nonsense" in err


def test_synth_command_writes_a_video(capsys, tmp_path):
    assert (
        main(["synth", str(tmp_path / "s"), "--frames", "3", "--size", "48x64", "--seed", "4"]) == 0
    )
    video = load_video(tmp_path / "s")
    assert video.frames.shape == (3, 48, 64, 3)


@pytest.mark.skipif(not CAMVID.is_dir(), reason="../shared/datasets/camvid is absent (fresh clone)")
def test_camvid_clip_reads_as_it_is():
    video = load_video(CAMVID / "clips" / "0016E5_1hz_c")
    assert video.frames.shape == (16, 360, 480, 3)
    assert len(video.classes) == 11 and video.classes.names[0] == "sky"
    assert video.labels.max() == VOID  # CamVid's void 11 became 255
    assert set(np.unique(video.labels)) - {VOID} <= set(range(11))


def _commands(parser, path=()):
    """Every command path of ``parser`` (``("campaign",)``, …), the root included."""
    import argparse

    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def test_every_command_prints_its_help(capsys):
    """``--help`` of every command and subcommand prints usage and exits 0: a ``%`` in a help
    text made argparse raise a traceback instead."""
    from hvsa.cli import build_parser

    paths = list(_commands(build_parser()))
    assert ("campaign",) in paths and ("benchmark",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as stop:
            main([*path, "--help"])
        assert stop.value.code == 0, path
        assert "usage: hvsa" in capsys.readouterr().out, path
