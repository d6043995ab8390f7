"""Labels in and a dataset out: existing labels (PNG folder, CVAT, Label Studio) enter a run as
human labels before round 1 with their provenance; `hvsa export` writes the finished labels in
five layouts with a dataset card; export then import gives back the same pixels."""

import json
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest

from hvsa.cli import main
from hvsa.data.images import read_image, write_image
from hvsa.data.label_formats import FORMATS, read_labels
from hvsa.data.video import VOID, load_video
from tests.conftest import write_fast_params

FAST = ["--set", "finetune.steps=5", "--set", "model.train_crop=null", "--set",
        "model.device=cpu", "--set", "samples.rect_size=16"]  # fmt: skip


def _run(video, out, *extra, rounds=1):
    return ["run", str(video), "--out", str(out), "--granularity", "frame", "--budget", "1",
            "--rounds", str(rounds), *FAST, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def finished(tiny_videos, tmp_path_factory):
    """A run of two rounds from two existing label PNGs (frames 0 and 5, 120 clicks declared)."""
    root = tmp_path_factory.mktemp("existing")
    given = root / "given"
    given.mkdir()
    for name in ("000000.png", "000005.png"):
        shutil.copy(tiny_videos[0] / "labels" / name, given / name)
    out = root / "run"
    argv = _run(tiny_videos[0], out, "--labels", str(given), "--labels-clicks", "120",
                "--labels-by", "team-a", rounds=2)  # fmt: skip
    assert main(argv) == 0
    return given, out


def test_existing_labels_are_round_0_human_labels_with_their_provenance(finished, tiny_videos,
                                                                         capsys):  # fmt: skip
    given, out = finished
    table = pd.read_parquet(out / "round_00" / "annotations.parquet")
    assert sorted(table["frame"]) == [0, 5]
    assert set(table["tool"]) == {"import"} and set(table["annotator"]) == {"team-a"}
    assert table["clicks"].sum() == 120  # the declared total, split over the frames
    truth = load_video(tiny_videos[0]).labels
    state = np.load(out / "round_00" / "human.npz")
    for frame in (0, 5):
        assert (state["labels"][frame] == truth[frame]).all()
        assert (state["provenance"][frame] > 0).all()
    assert not state["annotated"][[1, 2, 3, 4, 6, 7]].any()
    rounds0 = json.loads((out / "round_00" / "metrics.json").read_text())
    assert rounds0["clicks_total"] == 120
    # the audit names where they came from; the ledger verifies against the rounds
    capsys.readouterr()
    assert main(["audit", str(out), "--frame", "000005", "--pixel", "3,4"]) == 0
    said = capsys.readouterr().out
    assert "team-a before the rounds" in said and str(given) in said
    assert main(["audit", str(out), "--verify"]) == 0
    # round 1 selects another frame: the imported ones are covered
    picked = pd.read_parquet(out / "round_01" / "selected.parquet")["frame"].tolist()
    assert picked and not set(picked) & {0, 5}


def test_a_rerun_with_other_labels_does_not_resume_the_run(finished, tiny_videos, tmp_path,
                                                           capsys):  # fmt: skip
    given, out = finished
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(given / "000000.png", other / "000000.png")
    capsys.readouterr()
    assert main(_run(tiny_videos[0], out, "--labels", str(other), "--labels-clicks", "120",
                     "--labels-by", "team-a", rounds=2)) == 2  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "made differently" in err[0] and "labels" in err[0]


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_then_import_gives_the_same_pixels(finished, tiny_videos, tmp_path, fmt, capsys):
    _, out = finished
    target = tmp_path / fmt
    assert main(["export", str(out), "--out", str(target), "--format", fmt]) == 0
    video = load_video(tiny_videos[0])
    names = video.frame_names
    want = [read_image(out / "round_02" / "labels" / f"{n}.png") for n in names]
    found, got = read_labels(target, names, video.size, video.classes)
    assert found == fmt and sorted(got) == list(range(len(names)))
    assert all((got[i] == want[i]).all() for i in got)
    if fmt == "cvat":  # CVAT hands its export over as a zip
        archive = tmp_path / "cvat.zip"
        with zipfile.ZipFile(archive, "w") as z:
            for path in target.rglob("*"):
                z.write(path, path.relative_to(target))
        assert read_labels(archive, names, video.size, video.classes)[0] == "cvat"
    card = json.loads((target / "card.json").read_text())
    assert card["round"] == 2 and card["clicks_in_labels"] == card["clicks_paid"]
    assert card["annotators"]["team-a"]["clicks"] == 120
    assert card["settings"]["loop.rounds"] == 2 and card["hvsa_version"]
    frames = pd.read_parquet(target / "frames.parquet")
    assert frames.loc[0, "labelled_by_people"] == 1.0 and "team-a" in frames.loc[0, "annotators"]
    assert frames["estimated_quality"].between(0, 1).all()
    readme = (target / "README.md").read_text()
    assert "per-pixel labels" in readme
    # the tiny video has ground truth: each class's IoU beside its estimate, when there is one
    truth = card["per_class_against_ground_truth"]
    assert set(truth) == set(video.classes.names)
    assert f"| {video.classes.names[0]} |" in readme and "IoU against ground truth" in readme


def test_an_exported_dataset_enters_a_new_run_as_its_labels(finished, tiny_videos, tmp_path):
    _, out = finished
    target = tmp_path / "cvat"
    assert main(["export", str(out), "--out", str(target), "--format", "cvat"]) == 0
    again = tmp_path / "again"
    assert main(_run(tiny_videos[0], again, "--labels", str(target), rounds=1)) == 0
    human = np.load(again / "round_00" / "human.npz")["labels"]
    for i, name in enumerate(load_video(tiny_videos[0]).frame_names):
        assert (human[i] == read_image(out / "round_02" / "labels" / f"{name}.png")).all()
    table = pd.read_parquet(again / "round_00" / "annotations.parquet")
    assert len(table) == 8 and table["clicks"].sum() == 0  # none declared: unknown, 0


def _fails(argv, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hvsa: error: "), err
    return err[0]


def test_bad_existing_labels_are_refused_in_one_line_before_anything_is_written(
    tiny_videos, tmp_path, capsys
):
    video = tiny_videos[0]
    label = read_image(video / "labels" / "000001.png")
    cases = {}
    cases["a file that names no frame"] = ("stray.png", label, "name no frame")
    cases["a value outside the class list"] = ("000001.png", np.full_like(label, 40), "value 40")
    cases["the wrong size"] = ("000001.png", label[:10], "its frame")
    colour = np.zeros((*label.shape, 3), np.uint8)
    colour[..., 1] = 7
    cases["a colour of no class"] = ("000001.png", colour, "no class's colour")
    for k, (name, image, expected) in enumerate(cases.values()):
        given = tmp_path / f"given{k}"
        given.mkdir()
        write_image(given / name, image)
        out = tmp_path / f"out{k}"
        assert expected in _fails(_run(video, out, "--labels", str(given)), capsys)
        assert not out.exists()
    cvat = tmp_path / "cvat"
    (cvat / "SegmentationClass").mkdir(parents=True)
    (cvat / "labelmap.txt").write_text("background:0,0,0::\nlorry:1,2,3::\n")
    write_image(cvat / "SegmentationClass" / "000001.png", colour)
    assert "'lorry'" in _fails(_run(video, tmp_path / "o", "--labels", str(cvat)), capsys)
    nothing = tmp_path / "nothing"
    nothing.mkdir()
    write_image(nothing / "000001.png", np.full_like(label, VOID))
    assert "label no pixel" in _fails(_run(video, tmp_path / "o", "--labels", str(nothing)),
                                      capsys)  # fmt: skip
    assert "none, model" in _fails(
        _run(video, tmp_path / "o", "--labels", str(video / "labels"), "--labels-clicks", "-3"),
        capsys,
    )


def test_export_refuses_what_it_cannot_write(finished, tmp_path, capsys):
    _, out = finished
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep me")
    assert "not empty" in _fails(["export", str(out), "--out", str(busy)], capsys)
    assert (busy / "x").read_text() == "keep me"
    assert "neither" in _fails(["export", str(tmp_path), "--out", str(tmp_path / "n")], capsys)


def test_a_campaign_starts_from_existing_labels_and_exports_from_its_workspace(
    tiny_videos, tmp_path, capsys
):
    from hvsa.annotation.ledger import Ledger
    from hvsa.campaign.lifecycle import run_round

    params = write_fast_params(tmp_path / "params.yaml", **{"loop.rounds": 1})
    given = tmp_path / "given"
    given.mkdir()
    shutil.copy(tiny_videos[0] / "labels" / "000003.png", given / "000003.png")
    init = ["campaign", "init", str(tmp_path / "ws"), "--name", "c", "--params", str(params),
            "--video", f"a={tiny_videos[0]}", "--video", f"b={tiny_videos[1]}",
            "--labels", f"a={given}", "--labels-clicks", "40", "--labels-by", "team-a"]  # fmt: skip
    unknown = [*init[:11], "--labels", f"zz={given}"]
    assert "no such --video" in _fails(unknown, capsys)
    assert not (tmp_path / "ws").exists(), "a refused campaign writes nothing"
    assert main(init) == 0
    ws = tmp_path / "ws"
    run_round(ws)
    # round 0 of video a holds the imported frame, with its provenance in the ledger
    first = pd.read_parquet(ws / "data" / "a" / "r0" / "annotations.parquet")
    assert first["frame"].tolist() == [3] and first["tool"].tolist() == ["import"]
    assert pd.read_parquet(ws / "data" / "b" / "r0" / "annotations.parquet").empty
    with Ledger(ws / "data" / "ledger.sqlite") as ledger:
        events = ledger.frame(video="a")
    imported = events[events["tool"] == "import"]
    assert len(imported) == 1 and imported["annotator"].item() == "team-a"
    assert imported["clicks"].item() == 40 and imported["round"].item() == 0
    # the first round chose other frames than the one the team had done
    chosen = pd.read_parquet(ws / "data" / "a" / "r1" / "selected.parquet")["frame"].tolist()
    assert chosen and 3 not in chosen
    target = tmp_path / "dataset"
    assert main(["export", str(ws / "data" / "a"), "--out", str(target)]) == 0
    card = json.loads((target / "card.json").read_text())
    assert card["video"] == "a" and card["round"] == 1 and card["campaign"] == "c"
    assert card["existing_labels"] == str(given) and card["annotators"]["team-a"]["clicks"] == 40
    assert len(list((target / "labels").glob("*.png"))) == 8


def test_the_class_lists_void_id_reads_as_unlabelled(tiny_videos, tmp_path):
    video = load_video(tiny_videos[0])
    label = read_image(tiny_videos[0] / "labels" / "000002.png").copy()
    label[:5] = 11  # CamVid's classes.json says "void": 11
    write_image(tmp_path / "000002.png", label)
    _, got = read_labels(tmp_path, video.frame_names, video.size, video.classes, void=11)
    assert (got[2][:5] == VOID).all() and (got[2][5:] == label[5:]).all()


def test_a_nearly_whole_existing_frame_counts_as_labelled_in_full_a_partial_one_does_not():
    from hvsa.rounds.state import LoopState

    state = LoopState.empty(2, (10, 10))
    nearly, partial = np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8)
    nearly[0, :3] = VOID  # 3 % void: the annotator's "no class"
    partial[:4] = VOID  # 40 % left for a round
    state.apply_frames({0: nearly, 1: partial}, {0: 5, 1: 7}, [1, 2], whole=0.95)
    assert state.annotated[0].all() and state.annotated[1].sum() == 60
    assert (state.human[0][0, :3] == VOID).all() and state.clicks_total == 12
    assert (state.provenance[0][nearly != VOID] == 1).all()
    assert (state.provenance[0][nearly == VOID] == 0).all()
