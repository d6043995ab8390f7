"""The click ledger: an append-only SQLite record of every annotation event.

Annotators are paid and audited, so every label must be traceable to the clicks that produced
it. Rows are only ever inserted: triggers make UPDATE and DELETE fail, and a correction or a
rollback is a new event. WAL mode lets the annotation app write while a flow or an audit reads.
Each event may carry an idempotency key, so that a step replayed after a crash records its
events once, not twice.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from hvsa.errors import HvsaError

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('annotation', 'correction', 'rollback')),
    campaign TEXT NOT NULL,
    video TEXT NOT NULL,
    round INTEGER NOT NULL,
    sample_id INTEGER,
    frame INTEGER,
    frame_name TEXT,
    geometry TEXT,
    annotator TEXT,
    tool TEXT,
    clicks INTEGER NOT NULL DEFAULT 0 CHECK (clicks >= 0),
    clicks_detail TEXT,
    class_pixels TEXT,
    started REAL,
    finished REAL,
    label_hash TEXT,
    note TEXT,
    idempotency_key TEXT UNIQUE,
    recorded REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_video_round ON events (campaign, video, round);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: record a correction instead'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: record a correction instead'); END;
"""


@dataclass
class Event:
    """One ledger row before it is recorded (``event_id`` and ``recorded`` are set by SQLite)."""

    kind: str
    campaign: str
    video: str
    round: int
    sample_id: int | None = None
    frame: int | None = None
    frame_name: str | None = None
    geometry: dict | None = None
    annotator: str | None = None
    tool: str | None = None
    clicks: int = 0
    clicks_detail: dict | None = None
    class_pixels: dict | None = None
    started: float | None = None
    finished: float | None = None
    label_hash: str | None = None
    note: str | None = None
    idempotency_key: str | None = None


_JSON_FIELDS = ("geometry", "clicks_detail", "class_pixels")


class Ledger:
    """Append-only event store in one SQLite file (WAL mode)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise HvsaError(f"cannot open ledger {self.path}: {exc}") from exc
        self.conn.row_factory = sqlite3.Row

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def append(self, events: Iterable[Event]) -> list[int]:
        """Record events in one transaction; returns their ids, in order.

        An event whose idempotency key is already recorded is not inserted again; the id of the
        earlier row is returned, so a replayed step sees the same ids.
        """
        ids = []
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            for event in events:
                row = asdict(event)
                for key in _JSON_FIELDS:
                    row[key] = None if row[key] is None else json.dumps(row[key], sort_keys=True)
                if event.idempotency_key is not None:
                    found = self.conn.execute(
                        "SELECT event_id FROM events WHERE idempotency_key = ?",
                        (event.idempotency_key,),
                    ).fetchone()
                    if found is not None:
                        ids.append(int(found[0]))
                        continue
                row["recorded"] = time.time()
                cols = ", ".join(row)
                marks = ", ".join(f":{k}" for k in row)
                cur = self.conn.execute(f"INSERT INTO events ({cols}) VALUES ({marks})", row)
                ids.append(int(cur.lastrowid))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return ids

    def get(self, event_id: int) -> dict:
        row = self.conn.execute("SELECT * FROM events WHERE event_id = ?", (event_id,)).fetchone()
        if row is None:
            raise HvsaError(f"no ledger event {event_id} in {self.path}")
        return _decode(dict(row))

    def count(self, **where: object) -> int:
        """Number of events matching column equalities."""
        clauses = " AND ".join(f"{k} = :{k}" for k in where) or "1"
        return int(
            self.conn.execute(f"SELECT COUNT(*) FROM events WHERE {clauses}", where).fetchone()[0]
        )

    def frame(self, **where: object) -> pd.DataFrame:
        """All events (optionally filtered by column equality) as a table, oldest first."""
        clauses = " AND ".join(f"{k} = :{k}" for k in where)
        sql = "SELECT * FROM events" + (f" WHERE {clauses}" if clauses else "")
        rows = [_decode(dict(r)) for r in self.conn.execute(sql + " ORDER BY event_id", where)]
        return pd.DataFrame(rows)


def _decode(row: dict) -> dict:
    for key in _JSON_FIELDS:
        if row.get(key) is not None:
            row[key] = json.loads(row[key])
    return row
