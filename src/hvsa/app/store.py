"""The annotation app's own records: annotators and their tokens, who holds which sample.

Kept in ``data/app.sqlite`` of the workspace (git-ignored: it holds token hashes), apart from the
click ledger, which stays the one record of labels and clicks. Every decision that two
annotators could race for — taking a sample, handing it in, closing a round — is one
``BEGIN IMMEDIATE`` transaction, so SQLite serialises them: a sample is never held by two
annotators at once, and a submission is accepted once.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hvsa.campaign.workspace import Workspace
from hvsa.config import AppConfig
from hvsa.errors import HvsaError

SCHEMA = """
CREATE TABLE IF NOT EXISTS annotators (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    video TEXT NOT NULL,
    round INTEGER NOT NULL,
    sample_id INTEGER NOT NULL,
    annotator TEXT NOT NULL REFERENCES annotators (name),
    assigned REAL NOT NULL,
    submitted REAL,
    PRIMARY KEY (video, round, sample_id)
);
CREATE TABLE IF NOT EXISTS drafts (
    video TEXT NOT NULL,
    round INTEGER NOT NULL,
    sample_id INTEGER NOT NULL,
    annotator TEXT NOT NULL,
    labels BLOB NOT NULL,
    meta TEXT NOT NULL,
    saved REAL NOT NULL,
    PRIMARY KEY (video, round, sample_id)
);
CREATE TABLE IF NOT EXISTS closed_rounds (
    video TEXT NOT NULL,
    round INTEGER NOT NULL,
    closed REAL NOT NULL,
    PRIMARY KEY (video, round)
);
"""


class RefusedError(HvsaError):
    """A request the app turns down; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Assignment:
    video: str
    round: int
    sample_id: int
    annotator: str
    assigned: float
    submitted: float | None


class AppStore:
    """Annotators, tokens and sample assignments of one workspace."""

    def __init__(self, path: Path, lease_s: float, token_days: float = 30.0):
        """``lease_s``: how long a taken, unsubmitted sample stays its annotator's alone;
        ``token_days``: how long a new token signs in."""
        self.path, self.lease_s, self.token_days = Path(path), lease_s, token_days
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.db.executescript(SCHEMA)
        columns = {r[1] for r in self.db.execute("PRAGMA table_info(annotators)")}
        for column in ("expires", "revoked", "admin"):  # a store made before these were kept
            if column not in columns:
                self.db.execute(f"ALTER TABLE annotators ADD COLUMN {column} REAL")

    @property
    def db(self) -> sqlite3.Connection:
        """This thread's connection: the web server answers requests on several threads, and
        a transaction must never interleave with another thread's on one connection."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One writer at a time: the whole check-then-write runs under SQLite's write lock."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # annotators ------------------------------------------------------------------------------

    def add_annotator(self, name: str, renew: bool = False, admin: bool = False) -> str:
        """Register ``name`` (or, with ``renew``, give a known annotator a fresh token, which
        also lifts a revocation) and return the new token: shown once, only its hash is kept;
        it signs in for ``token_days``. ``admin``: they also see who holds which sample and may
        release it (a renewal sets this anew)."""
        name = name.strip()
        if not name or len(name) > 64 or any(not c.isprintable() for c in name):
            raise HvsaError(f"annotator name {name!r}: use 1–64 printable characters")
        token = secrets.token_urlsafe(24)
        now = time.time()
        expires = now + 86400 * self.token_days
        with self.transaction() as db:
            known = db.execute("SELECT 1 FROM annotators WHERE name = ?", (name,)).fetchone()
            if known and not renew:
                raise HvsaError(f"annotator {name!r} exists already (--renew gives a new token)")
            if not known and renew:
                raise HvsaError(f"no annotator {name!r} to renew")
            if known:
                db.execute(
                    "UPDATE annotators SET token_hash = ?, expires = ?, revoked = NULL, "
                    "admin = ? WHERE name = ?",
                    (token_hash(token), expires, now if admin else None, name),
                )
            else:
                db.execute(
                    "INSERT INTO annotators (name, token_hash, created, expires, admin) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (name, token_hash(token), now, expires, now if admin else None),
                )
        return token

    def is_admin(self, name: str) -> bool:
        row = self.db.execute("SELECT admin FROM annotators WHERE name = ?", (name,)).fetchone()
        return row is not None and row[0] is not None

    def revoke(self, name: str) -> None:
        """The annotator's token stops signing in at once; their samples free up when their
        leases run out (``--renew`` gives them a new token)."""
        with self.transaction() as db:
            done = db.execute(
                "UPDATE annotators SET revoked = ? WHERE name = ?", (time.time(), name)
            ).rowcount
        if not done:
            raise HvsaError(f"no annotator {name!r} (annotators: {', '.join(self.annotators())})")

    def annotators(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM annotators ORDER BY name")]

    def who(self, token: str | None) -> str:
        """The annotator a token belongs to; refused (401) when missing, unknown, revoked or
        expired."""
        if not token:
            raise RefusedError(
                "sign in with your annotator token (hvsa annotate add-annotator)", 401
            )
        row = self.db.execute(
            "SELECT name, expires, revoked FROM annotators WHERE token_hash = ?",
            (token_hash(token),),
        ).fetchone()
        if row is None:
            raise RefusedError("unknown annotator token", 401)
        name, expires, revoked = row
        if revoked is not None:
            raise RefusedError(f"the token of {name} was revoked: ask for a new one", 401)
        if expires is not None and time.time() > expires:
            when = time.strftime("%Y-%m-%d", time.gmtime(expires))
            raise RefusedError(
                f"the token of {name} expired on {when}: ask for a new one "
                f"(hvsa annotate add-annotator {name} --renew)",
                401,
            )
        return name

    # assignments -----------------------------------------------------------------------------

    def assignments(self, video: str, round_no: int) -> list[Assignment]:
        rows = self.db.execute(
            "SELECT * FROM assignments WHERE video = ? AND round = ? ORDER BY sample_id",
            (video, round_no),
        )
        return [Assignment(*r) for r in rows]

    def take(self, video: str, round_no: int, order: list[int], annotator: str) -> int | None:
        """The sample this annotator should label next, reserved for them; None when none is free.

        An annotator keeps the sample they hold; otherwise they get the first sample (in the
        selection's order) that nobody holds, or whose holder's lease ran out unsubmitted.
        """
        now = time.time()
        with self.transaction() as db:
            # the lease runs from the sample's taking or its holder's last autosave, whichever
            # is later: an annotator at work keeps their sample
            rows = {
                r[0]: r[1:]
                for r in db.execute(
                    "SELECT a.sample_id, a.annotator, MAX(a.assigned, COALESCE(d.saved, 0)), "
                    "a.submitted FROM assignments a LEFT JOIN drafts d ON d.video = a.video "
                    "AND d.round = a.round AND d.sample_id = a.sample_id "
                    "AND d.annotator = a.annotator WHERE a.video = ? AND a.round = ?",
                    (video, round_no),
                )
            }
            for sid in order:
                holder = rows.get(sid)
                if holder and holder[0] == annotator and holder[2] is None:
                    return sid
            for sid in order:
                holder = rows.get(sid)
                if holder is None:
                    db.execute(
                        "INSERT INTO assignments VALUES (?, ?, ?, ?, ?, NULL)",
                        (video, round_no, sid, annotator, now),
                    )
                    return sid
                if holder[2] is None and now - holder[1] > self.lease_s:
                    db.execute(
                        "UPDATE assignments SET annotator = ?, assigned = ? "
                        "WHERE video = ? AND round = ? AND sample_id = ?",
                        (annotator, now, video, round_no, sid),
                    )
                    # the former holder's work in progress was theirs: the new one starts anew
                    db.execute(
                        "DELETE FROM drafts WHERE video = ? AND round = ? AND sample_id = ?",
                        (video, round_no, sid),
                    )
                    return sid
        return None

    def check_holder(
        self, db: sqlite3.Connection, video: str, round_no: int, sample_id: int, annotator: str
    ) -> float:
        """Refuse a submission for a sample this annotator does not hold (inside a
        transaction); returns when they took it."""
        row = db.execute(
            "SELECT annotator, submitted, assigned FROM assignments "
            "WHERE video = ? AND round = ? AND sample_id = ?",
            (video, round_no, sample_id),
        ).fetchone()
        if row is None or row[0] != annotator:
            raise RefusedError(
                f"sample {sample_id} of {video} round {round_no} is not assigned to {annotator}"
            )
        if row[1] is not None:
            raise RefusedError(
                f"sample {sample_id} of {video} round {round_no} is already submitted"
            )
        return float(row[2])

    def mark_submitted(
        self, db: sqlite3.Connection, video: str, round_no: int, sample_id: int
    ) -> None:
        db.execute(
            "UPDATE assignments SET submitted = ? WHERE video = ? AND round = ? AND sample_id = ?",
            (time.time(), video, round_no, sample_id),
        )
        db.execute(
            "DELETE FROM drafts WHERE video = ? AND round = ? AND sample_id = ?",
            (video, round_no, sample_id),
        )

    def holds(self) -> list[dict]:
        """Every sample taken and not handed in: who holds it, since when, when their work on
        it was last saved, and how long their lease has left (the admin view)."""
        now = time.time()
        rows = self.db.execute(
            "SELECT a.video, a.round, a.sample_id, a.annotator, a.assigned, d.saved "
            "FROM assignments a LEFT JOIN drafts d ON d.video = a.video AND d.round = a.round "
            "AND d.sample_id = a.sample_id AND d.annotator = a.annotator "
            "WHERE a.submitted IS NULL ORDER BY a.video, a.round, a.sample_id"
        )
        return [
            {"video": v, "round": r, "sample_id": s, "annotator": who, "taken": taken,
             "saved": saved,
             "lease_left_s": round(max(0.0, taken, saved or 0) + self.lease_s - now, 1)}
            for v, r, s, who, taken, saved in rows
        ]  # fmt: skip

    def release(self, video: str, round_no: int, sample_id: int) -> str:
        """Free a held sample at once (its holder left for good): the next annotator to ask
        gets it, from the prefill. Returns who held it; refused when nobody does."""
        with self.transaction() as db:
            row = db.execute(
                "SELECT annotator FROM assignments WHERE video = ? AND round = ? "
                "AND sample_id = ? AND submitted IS NULL",
                (video, round_no, sample_id),
            ).fetchone()
            if row is None:
                raise RefusedError(
                    f"nobody holds sample {sample_id} of {video} round {round_no}", 404
                )
            for table in ("assignments", "drafts"):
                db.execute(
                    f"DELETE FROM {table} WHERE video = ? AND round = ? AND sample_id = ?",
                    (video, round_no, sample_id),
                )
        return row[0]

    # work in progress ------------------------------------------------------------------------

    def save_draft(
        self, video: str, round_no: int, sample_id: int, annotator: str, labels: bytes, meta: dict
    ) -> float:
        """Keep the holder's work in progress on a sample (labels as the page holds them, its
        click counts and times), so that a closed page loses nothing; it also renews the
        holder's lease. Refused for a sample they do not hold. Returns when it was saved."""
        now = time.time()
        with self.transaction() as db:
            self.check_holder(db, video, round_no, sample_id, annotator)
            db.execute(
                "INSERT OR REPLACE INTO drafts VALUES (?, ?, ?, ?, ?, ?, ?)",
                (video, round_no, sample_id, annotator, labels, json.dumps(meta), now),
            )
        return now

    def draft(
        self, video: str, round_no: int, sample_id: int, annotator: str
    ) -> tuple[bytes, dict, float] | None:
        """The annotator's saved work in progress on a sample they hold: labels, the page's
        counts and times, when it was saved; None if there is none."""
        row = self.db.execute(
            "SELECT d.labels, d.meta, d.saved FROM drafts d JOIN assignments a "
            "ON a.video = d.video AND a.round = d.round AND a.sample_id = d.sample_id "
            "AND a.annotator = d.annotator AND a.submitted IS NULL "
            "WHERE d.video = ? AND d.round = ? AND d.sample_id = ? AND d.annotator = ?",
            (video, round_no, sample_id, annotator),
        ).fetchone()
        return None if row is None else (bytes(row[0]), json.loads(row[1]), float(row[2]))

    def submitted(self, db: sqlite3.Connection, video: str, round_no: int) -> set[int]:
        rows = db.execute(
            "SELECT sample_id FROM assignments "
            "WHERE video = ? AND round = ? AND submitted IS NOT NULL",
            (video, round_no),
        )
        return {r[0] for r in rows}

    def close_round(self, db: sqlite3.Connection, video: str, round_no: int) -> bool:
        """Mark the round closed; False if it was closed already (so it is handed in once)."""
        try:
            db.execute("INSERT INTO closed_rounds VALUES (?, ?, ?)", (video, round_no, time.time()))
        except sqlite3.IntegrityError:
            return False
        return True

    def forget_after(self, video: str, round_no: int) -> None:
        """Drop who held and who handed in the rounds of ``video`` after ``round_no``: the
        video was rolled back to it, and those rounds will be selected and labelled anew (the
        ledger keeps what was paid for)."""
        with self.transaction() as db:
            for table in ("assignments", "drafts", "closed_rounds"):
                db.execute(f"DELETE FROM {table} WHERE video = ? AND round > ?", (video, round_no))

    def is_closed(self, video: str, round_no: int) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM closed_rounds WHERE video = ? AND round = ?", (video, round_no)
        ).fetchone()
        return row is not None


def app_store(ws: Workspace, app: AppConfig | None = None) -> AppStore:
    """The app's records of a campaign workspace (``data/app.sqlite``), with the workspace's
    ``app`` settings or ``app``."""
    app = app or ws.cfg.app
    return AppStore(ws.root / "data" / "app.sqlite", app.lease_s, app.token_days)
