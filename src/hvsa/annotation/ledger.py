"""The click ledger: an append-only SQLite record of every annotation event.

Annotators are paid and audited, so every label must be traceable to the clicks that produced
it. Rows are only ever inserted: triggers make UPDATE and DELETE fail, and a correction or a
rollback is a new event. WAL mode lets the annotation app write while a flow or an audit reads.
Each event may carry an idempotency key, so that a step replayed after a crash records its
events once, not twice.

Triggers stop honest mistakes, not someone with the file: they can be dropped. So each event
also carries the SHA-256 of its own content and of the event before it (a hash chain): an
edited, deleted or reordered event, a dropped trigger or a removed tail no longer verifies
(:func:`verify_ledger`, ``hvsa audit --verify``), and the rounds' folders keep the hashes of
the events they used, so a chain rewritten from the start does not match them either. A
BEFORE INSERT trigger refuses any row that does not extend the chain, which refuses
``INSERT OR REPLACE`` of an existing event as well.
"""

from __future__ import annotations

import hashlib
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
    recorded REAL NOT NULL,
    prev_hash TEXT,
    hash TEXT
);
CREATE INDEX IF NOT EXISTS events_video_round ON events (campaign, video, round);
"""
# created after ``_migrate``: a ledger made before the chain gains its columns first
TRIGGERS = {
    "events_no_update": """CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: record a correction instead'); END""",
    "events_no_delete": """CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: record a correction instead'); END""",
    "events_chain": """CREATE TRIGGER IF NOT EXISTS events_chain BEFORE INSERT ON events
WHEN NEW.hash IS NULL
  OR NEW.event_id IS NULL
  OR NEW.event_id <= COALESCE((SELECT MAX(event_id) FROM events), 0)
  OR NEW.prev_hash IS NOT COALESCE(
       (SELECT hash FROM events ORDER BY event_id DESC LIMIT 1), '')
  OR (NEW.idempotency_key IS NOT NULL
      AND EXISTS (SELECT 1 FROM events WHERE idempotency_key = NEW.idempotency_key))
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: a new event extends the hash chain'); END""",
}
# every column but the hash itself, in the order they are hashed
HASHED = ("event_id", "kind", "campaign", "video", "round", "sample_id", "frame", "frame_name",
          "geometry", "annotator", "tool", "clicks", "clicks_detail", "class_pixels", "started",
          "finished", "label_hash", "note", "idempotency_key", "recorded", "prev_hash")  # fmt: skip
_INTS = ("event_id", "round", "sample_id", "frame", "clicks")
_REALS = ("started", "finished", "recorded")


def _normal(row: dict) -> dict:
    """Values as SQLite stores them (an int in a REAL column comes back a float), so the hash
    of a row computed before it is written equals the hash of the row read back."""
    out = dict(row)
    for key in _INTS:
        if out.get(key) is not None:
            out[key] = int(out[key])
    for key in _REALS:
        if out.get(key) is not None:
            out[key] = float(out[key])
    return out


def event_hash(row: dict) -> str:
    """SHA-256 of a stored row's content and its ``prev_hash`` (JSON fields as stored text)."""
    text = json.dumps([row.get(k) for k in HASHED], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


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
            self.conn.execute("PRAGMA recursive_triggers=ON")  # REPLACE's deletes fire too
            self.conn.executescript(SCHEMA)
            self._migrate()
            for statement in TRIGGERS.values():
                self.conn.execute(statement)
        except sqlite3.DatabaseError as exc:
            raise HvsaError(f"cannot open ledger {self.path}: {exc}") from exc
        self.conn.row_factory = sqlite3.Row

    def _migrate(self) -> None:
        """A ledger written before events were chained gains the chain's columns; its earlier
        events stay unchained (``verify_ledger`` counts them) and the chain starts after them."""
        columns = {r[1] for r in self.conn.execute("PRAGMA table_info(events)")}
        for column in ("prev_hash", "hash"):
            if column not in columns:
                self.conn.execute(f"ALTER TABLE events ADD COLUMN {column} TEXT")

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
                last = self.conn.execute(
                    "SELECT event_id, hash FROM events ORDER BY event_id DESC LIMIT 1"
                ).fetchone()
                row["event_id"] = 1 + max(last[0] if last else 0, self._sequence())
                row["recorded"] = time.time()
                row["prev_hash"] = (last[1] or "") if last else ""
                row = _normal(row)
                row["hash"] = event_hash(row)
                cols = ", ".join(row)
                marks = ", ".join(f":{k}" for k in row)
                cur = self.conn.execute(f"INSERT INTO events ({cols}) VALUES ({marks})", row)
                ids.append(int(cur.lastrowid))
            self.conn.execute("COMMIT")
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        return ids

    def _sequence(self) -> int:
        """The highest id AUTOINCREMENT has handed out: ids are never reused, even after a
        deleted tail, so a gap at the end stays visible."""
        found = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        row = found.fetchone()
        return int(row[0]) if row else 0

    def hashes(self, event_ids: Iterable[int]) -> list[str | None]:
        """The chain hashes of these events, in order (kept by the rounds that used them)."""
        ids = list(event_ids)
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        found = dict(
            self.conn.execute(f"SELECT event_id, hash FROM events WHERE event_id IN ({marks})", ids)
        )
        return [found.get(i) for i in ids]

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


def _folded(sql: str) -> str:
    return " ".join(sql.replace("IF NOT EXISTS ", "").split())


@dataclass
class ChainCheck:
    """What :func:`verify_chain` found: counts, one line per problem, and the events read."""

    chained: int
    unchained: int  # written before events were chained
    problems: list[str]
    events: pd.DataFrame


def verify_chain(path: str | Path) -> ChainCheck:
    """Check a ledger file on its own: its triggers, its ids and its hash chain.

    Each problem is one line naming the first event where the ledger stops being what was
    written. Opens the file read-only, so verifying never repairs or extends it (opening a
    :class:`Ledger` would put a dropped trigger back).
    """
    path = Path(path)
    if not path.is_file():
        raise HvsaError(f"no ledger at {path}")
    try:
        conn = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        triggers = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type='trigger'"))
        rows = [dict(r) for r in conn.execute("SELECT * FROM events ORDER BY event_id")]
        seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        conn.close()
    except sqlite3.DatabaseError as exc:
        raise HvsaError(f"cannot read ledger {path}: {exc}") from exc
    problems = []
    for name, sql in TRIGGERS.items():
        if name not in triggers:
            problems.append(f"trigger {name} is missing: the ledger was opened for edits")
        elif _folded(triggers[name]) != _folded(sql):
            problems.append(f"trigger {name} was changed: {_folded(triggers[name])[:80]}")
    unchained = 0
    previous: dict | None = None
    for expected_id, row in enumerate(rows, start=1):
        where = f"event {row['event_id']}"
        if row["event_id"] != expected_id:
            problems.append(f"{where}: events {expected_id}..{row['event_id'] - 1} were deleted")
            break
        if row.get("hash") is None:
            if previous is not None and previous.get("hash") is not None:
                problems.append(f"{where}: no hash after chained events (inserted by hand)")
                break
            unchained += 1
            previous = row
            continue
        prev_hash = (previous or {}).get("hash") or ""
        if row["prev_hash"] != prev_hash:
            problems.append(f"{where}: does not follow event {expected_id - 1} (an event was "
                            "removed, reordered or rewritten before it)")  # fmt: skip
            break
        if event_hash(_normal(row)) != row["hash"]:
            problems.append(f"{where}: its content was edited after it was recorded")
            break
        previous = row
    last = rows[-1]["event_id"] if rows else 0
    if seq is not None and int(seq[0]) > last:
        problems.append(f"events {last + 1}..{int(seq[0])} were recorded and then deleted")
    events = pd.DataFrame([_decode(dict(r)) for r in rows])
    return ChainCheck(len(rows) - unchained, unchained, problems, events)
