"""The append-only click ledger and the audit answers built on it."""

import multiprocessing as mp
import sqlite3

import numpy as np
import pytest

from hvsa.annotation.audit import audit_pixel, audit_summary
from hvsa.annotation.ledger import Event, Ledger
from hvsa.cli import main


def _event(i: int, key: str | None = None) -> Event:
    return Event(
        kind="annotation", campaign="c", video="v", round=1, sample_id=i, frame=0,
        annotator="ann", tool="polygon", clicks=3, class_pixels={"road": 5},
        idempotency_key=key,
    )  # fmt: skip


def test_ledger_is_wal_and_append_only(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ids = ledger.append([_event(1), _event(2)])
        assert ids == [1, 2]
        assert ledger.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            ledger.conn.execute("UPDATE events SET clicks = 0")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            ledger.conn.execute("DELETE FROM events")
        assert ledger.frame()["clicks"].tolist() == [3, 3]
        assert ledger.get(2)["class_pixels"] == {"road": 5}


def test_replayed_events_are_recorded_once(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        first = ledger.append([_event(1, "k1"), _event(2, "k2")])
        again = ledger.append([_event(1, "k1"), _event(2, "k2"), _event(3, "k3")])
        assert again[:2] == first
        assert len(ledger.frame()) == 3


def test_a_failed_batch_leaves_nothing_behind(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        bad = _event(2)
        bad.clicks = -1  # violates the CHECK constraint
        with pytest.raises(sqlite3.IntegrityError):
            ledger.append([_event(1), bad])
        assert ledger.frame().empty


def _writer(path: str, worker: int) -> None:
    with Ledger(path) as ledger:
        for i in range(25):
            ledger.append([_event(i, f"{worker}-{i}")])


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "l.sqlite")
    Ledger(path).close()
    procs = [mp.get_context("spawn").Process(target=_writer, args=(path, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Ledger(path) as ledger:
        table = ledger.frame()
    assert len(table) == 75
    assert table["idempotency_key"].is_unique


@pytest.fixture(scope="module")
def finished_run(tiny_videos, pretrained, tmp_path_factory):
    out = tmp_path_factory.mktemp("audited") / "run"
    code = main([
        "run", str(tiny_videos[0]), "--model", str(pretrained), "--out", str(out),
        "--granularity", "rect", "--budget", "6", "--rounds", "2",
        "--set", "samples.rect_size=16", "--set", "finetune.steps=3",
    ])  # fmt: skip
    assert code == 0
    return out


def test_audit_pixel_names_the_event_that_set_it(finished_run):
    provenance = np.load(finished_run / "round_02" / "human.npz")["provenance"]
    frame, y, x = np.argwhere(provenance > 0)[0]
    answer = audit_pixel(finished_run, "ledger.sqlite", str(frame), int(x), int(y))
    assert answer["source"] == "human"
    assert answer["annotator"] == "oracle" and answer["tool"] == "polygon"
    assert answer["event_id"] == provenance[frame, y, x]
    with Ledger(finished_run / "ledger.sqlite") as ledger:
        event = ledger.get(answer["event_id"])
    assert answer["clicks"] == event["clicks"] and answer["round"] == event["round"]
    g = event["geometry"]
    assert g["x0"] <= x < g["x1"] and g["y0"] <= y < g["y1"]

    frame, y, x = np.argwhere(provenance == 0)[0]
    answer = audit_pixel(finished_run, "ledger.sqlite", str(frame), int(x), int(y))
    assert answer["source"] == "model" and answer["model_round"] == 2


def test_audit_as_of_an_earlier_round(finished_run):
    late = np.load(finished_run / "round_02" / "human.npz")["provenance"]
    early = np.load(finished_run / "round_01" / "human.npz")["provenance"]
    frame, y, x = np.argwhere((late > 0) & (early == 0))[0]
    assert (
        audit_pixel(finished_run, "ledger.sqlite", str(frame), int(x), int(y), 1)["source"]
        == "model"
    )
    assert audit_pixel(finished_run, "ledger.sqlite", str(frame), int(x), int(y))["round"] == 2


def test_audit_summary_adds_up(finished_run):
    import json

    summary = audit_summary(finished_run, "ledger.sqlite")
    total = json.loads((finished_run / "summary.json").read_text())["clicks"]
    assert summary["annotator"].loc["oracle", "clicks"] == total
    assert summary["round"]["clicks"].sum() == total
    assert summary["class"]["clicks"].sum() == pytest.approx(total)
    assert summary["round"]["events"].tolist() == [6, 6]
    shares = summary["shares"]
    assert 0 < shares["pixels_by_human"] < 1
    assert shares["pixels_by_human"] + shares["pixels_by_model"] == pytest.approx(1)


def test_audit_cli(finished_run, capsys):
    assert main(["audit", str(finished_run), "--summary"]) == 0
    assert "clicks per annotator" in capsys.readouterr().out
    provenance = np.load(finished_run / "round_02" / "human.npz")["provenance"]
    frame, y, x = np.argwhere(provenance > 0)[0]
    assert main(["audit", str(finished_run), "--frame", str(frame), "--pixel", f"{x},{y}"]) == 0
    assert "labelled by oracle" in capsys.readouterr().out
    assert main(["audit", str(finished_run), "--frame", "999", "--pixel", "1,1"]) == 2
    assert "no frame" in capsys.readouterr().err
