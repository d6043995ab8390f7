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


def test_insert_or_replace_cannot_rewrite_an_event(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.append([_event(1, "k1"), _event(2, "k2")])
        for sql in (
            "INSERT OR REPLACE INTO events (event_id, kind, campaign, video, round, recorded) "
            "VALUES (1, 'annotation', 'c', 'v', 1, 0)",
            "REPLACE INTO events (kind, campaign, video, round, recorded, idempotency_key) "
            "VALUES ('annotation', 'c', 'v', 1, 0, 'k2')",
            "INSERT INTO events (kind, campaign, video, round, recorded) "  # not chained
            "VALUES ('annotation', 'c', 'v', 1, 0)",
        ):
            with pytest.raises(sqlite3.DatabaseError, match="append-only"):
                ledger.conn.execute(sql)
        assert ledger.frame()["clicks"].tolist() == [3, 3]
        assert ledger.append([_event(3)]) == [3]  # the chain still grows


def _tampered(run, tmp_path, *statements):
    """A copy of the run with ``statements`` executed on its ledger by someone with the file."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    conn = sqlite3.connect(copy / "ledger.sqlite")
    for sql in statements:
        conn.execute(sql)
    conn.commit()
    conn.close()
    return copy


@pytest.mark.parametrize(
    ("statements", "found"),
    [
        (["DROP TRIGGER events_no_update"], "trigger events_no_update is missing"),
        (["DROP TRIGGER events_no_update", "UPDATE events SET clicks = 1 WHERE event_id = 3"],
         "event 3: its content was edited"),
        (["DROP TRIGGER events_no_update",
          "UPDATE events SET annotator = 'mallory' WHERE event_id = 8"], "event 8: its content"),
        (["DROP TRIGGER events_no_delete", "DELETE FROM events WHERE event_id = 5"],
         "events 5..5 were deleted"),
        (["DROP TRIGGER events_no_delete", "DELETE FROM events WHERE event_id >= 11"],
         "events 11..12 were recorded and then deleted"),
        # two events swap their content: ids stay in order, the chain does not
        (["DROP TRIGGER events_no_update",
          "UPDATE events SET event_id = -1 WHERE event_id = 4",
          "UPDATE events SET event_id = 4 WHERE event_id = 5",
          "UPDATE events SET event_id = 5 WHERE event_id = -1"], "event 4: does not follow"),
    ],
    ids=["dropped-trigger", "edited-clicks", "edited-annotator", "deleted", "deleted-tail",
         "reordered"],
)  # fmt: skip
def test_audit_verify_detects_tampering(finished_run, tmp_path, capsys, statements, found):
    assert main(["audit", str(finished_run), "--verify"]) == 0
    verified = "ledger verified: 12 chained events, 3 rounds' events and provenance"
    assert verified in capsys.readouterr().out
    copy = _tampered(finished_run, tmp_path, *statements)
    assert main(["audit", str(copy), "--verify"]) == 2
    captured = capsys.readouterr()
    assert found in captured.out
    assert "the ledger does not verify" in captured.err


def test_audit_verify_detects_a_rewritten_chain(finished_run, tmp_path, capsys):
    """Edit an event, recompute every hash after it and put the triggers back: the chain is
    whole again, but the rounds' versioned folders recorded the original hashes."""
    from hvsa.annotation.ledger import TRIGGERS, _normal, event_hash

    copy = _tampered(finished_run, tmp_path, "DROP TRIGGER events_no_update",
                     "DROP TRIGGER events_chain")  # fmt: skip
    conn = sqlite3.connect(copy / "ledger.sqlite")
    conn.row_factory = sqlite3.Row
    conn.execute("UPDATE events SET clicks = clicks + 100 WHERE event_id = 2")
    prev = ""
    for row in [dict(r) for r in conn.execute("SELECT * FROM events ORDER BY event_id")]:
        row["prev_hash"] = prev
        prev = event_hash(_normal(row))
        conn.execute("UPDATE events SET prev_hash = ?, hash = ? WHERE event_id = ?",
                     (row["prev_hash"], prev, row["event_id"]))  # fmt: skip
    for sql in TRIGGERS.values():
        conn.execute(sql)
    conn.commit()
    conn.close()
    assert main(["audit", str(copy), "--verify"]) == 2
    out = capsys.readouterr().out
    assert "round 1, event 2: the ledger's event is not the one the round recorded" in out


def test_audit_verify_detects_provenance_without_its_event(finished_run, tmp_path, capsys):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    human = dict(np.load(copy / "round_02" / "human.npz"))
    human["provenance"][0, 0, 0] = 999
    np.savez_compressed(copy / "round_02" / "human.npz", **human)
    assert main(["audit", str(copy), "--verify"]) == 2
    assert "round 2, frame 0, event 999: labelled pixels name an event not in the ledger" in (
        capsys.readouterr().out
    )


def test_a_ledger_from_before_the_chain_keeps_working(tmp_path):
    """A ledger written before events were chained gains the columns; its old events are
    counted as unchained, and new events chain after them."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE events (event_id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
        " campaign TEXT NOT NULL, video TEXT NOT NULL, round INTEGER NOT NULL, sample_id INTEGER,"
        " frame INTEGER, frame_name TEXT, geometry TEXT, annotator TEXT, tool TEXT,"
        " clicks INTEGER NOT NULL DEFAULT 0, clicks_detail TEXT, class_pixels TEXT,"
        " started REAL, finished REAL, label_hash TEXT, note TEXT,"
        " idempotency_key TEXT UNIQUE, recorded REAL NOT NULL);"
        "INSERT INTO events (kind, campaign, video, round, clicks, recorded)"
        " VALUES ('annotation', 'c', 'v', 1, 4, 1.0), ('annotation', 'c', 'v', 1, 5, 2.0);"
    )
    conn.close()
    with Ledger(path) as ledger:
        assert ledger.append([_event(3)]) == [3]
    from hvsa.annotation.ledger import verify_chain

    check = verify_chain(path)
    assert (check.chained, check.unchained, check.problems) == (1, 2, [])
