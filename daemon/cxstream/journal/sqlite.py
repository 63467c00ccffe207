"""The journal on SQLite: one file in ``storage.state_dir``, WAL, fsync on commit.

``synchronous=FULL`` makes a commit durable against power loss, not just a
crash, which is what "202 only once the job is durably recorded" promises.
SQLite calls block, so they run on one dedicated thread: that serialises
every transaction without a lock and keeps the event loop free. Writes are
group-committed (``journal/group.py``): whatever is waiting when the thread
gets to it, webhooks, claims and checkpoints alike, runs in one transaction
with one fsync, and each caller hears back only after that commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from cxstream.journal.base import (
    Announcement,
    Checkpoint,
    Enqueued,
    Job,
    JobRequest,
    JobState,
    JournalError,
)
from cxstream.journal.group import GroupCommit

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id            INTEGER PRIMARY KEY,
    recording_id  TEXT NOT NULL UNIQUE,
    webhook_id    TEXT NOT NULL,
    contact_id    TEXT,
    codec         TEXT,
    offsets       TEXT,
    day           TEXT NOT NULL,
    state         TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    checkpoint    TEXT,
    result        TEXT,
    created_at    REAL NOT NULL,
    updated_at    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, id);
-- The queue's size and age (back-pressure, metrics) and "failed in the last
-- hour" read this index alone, however many completed jobs the table holds.
CREATE INDEX IF NOT EXISTS jobs_state_updated ON jobs (state, updated_at);
-- When the current run of a job began and where it stood: a rate for `cxstream status`.
CREATE TABLE IF NOT EXISTS runs (
    job_id        INTEGER PRIMARY KEY,
    started_at    REAL NOT NULL,
    start_offset  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS webhooks (
    webhook_id    TEXT PRIMARY KEY,
    recording_id  TEXT NOT NULL,
    received_at   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id            INTEGER PRIMARY KEY,
    webhook_id    TEXT NOT NULL UNIQUE,
    recording_id  TEXT NOT NULL,
    body          BLOB NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       REAL NOT NULL,
    created_at    REAL NOT NULL,
    last_error    TEXT,
    delivered_at  REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (delivered_at, next_at);
CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at REAL NOT NULL);
"""
# Columns added since the first release. CREATE TABLE IF NOT EXISTS leaves an
# existing journal's table as it was, so every journal, new or old, gets them
# the same way: ADD COLUMN where PRAGMA table_info says they are missing.
_ADDED_COLUMNS = (
    ("jobs", "original_name", "TEXT"),
    ("jobs", "scope", "TEXT NOT NULL DEFAULT 'recording'"),
    ("jobs", "source_ref", "TEXT"),
)
# jobs.webhook_id is NOT NULL in every existing journal (SQLite cannot relax
# that in place). An unsigned webhook (bearer/basic) has no id: it stores "",
# which no real webhook-id can be.
_NO_WEBHOOK_ID = ""


class SqliteJournal:
    def __init__(
        self,
        path: Path,
        clock: Callable[[], float] = time.time,
        on_commit: Callable[[float], None] | None = None,
        busy_timeout_s: float = 5.0,
    ) -> None:
        self.path = path
        self.location = str(path)
        self._clock = clock
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._db: sqlite3.Connection | None = None
        self._group = GroupCommit(self._executor, lambda: self._db, on_commit)
        # Every method below is one unit of work in some group's transaction.
        self._write = self._group.run

    @property
    def groups(self) -> int:
        """Transactions committed (or tried) so far: fewer than calls when grouped."""
        return self._group.groups

    # -- plumbing ---------------------------------------------------------

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        db.executescript(_SCHEMA)
        for table, column, decl in _ADDED_COLUMNS:
            if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        self._db = db

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            # Shielded: once a transaction is handed to the thread it completes,
            # and its outcome is not lost to a cancelled caller.
            return await asyncio.shield(loop.run_in_executor(self._executor, fn, *args))
        except sqlite3.Error as exc:
            raise JournalError(f"{exc.__class__.__name__}: {exc}") from exc
        except RuntimeError:
            # The executor is shut: the journal was closed under a late caller.
            raise JournalError("journal is closed") from None

    async def _read(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """A read on the journal's thread, outside any write transaction: WAL gives it a
        snapshot and it never holds the write lock a running daemon needs."""

        def run() -> T:
            if self._db is None:
                raise sqlite3.ProgrammingError("journal is closed")
            return body(self._db)

        return await self._run(run)

    async def close(self) -> None:
        if self._db is None:
            return

        def _close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await self._run(_close)
        self._executor.shutdown(wait=True)

    # -- jobs -------------------------------------------------------------

    async def enqueue(self, request: JobRequest) -> Enqueued:
        """Durable when it returns: its group's transaction has committed (fsync'd).

        Grouped with whatever else waits for the journal: a repeat of a request
        earlier in the same group is a duplicate here too, as the statements
        see the group's own writes.
        """
        now = self._clock()

        def body(db: sqlite3.Connection) -> Enqueued:
            # Without a webhook-id (bearer/basic) idempotency rests on the job's
            # name alone: the recording/contact lookup below.
            if request.webhook_id is not None:
                seen = db.execute(
                    "SELECT 1 FROM webhooks WHERE webhook_id = ?", (request.webhook_id,)
                ).fetchone()
                if seen:
                    return Enqueued.DUPLICATE
                db.execute(
                    "INSERT INTO webhooks (webhook_id, recording_id, received_at) VALUES (?, ?, ?)",
                    (request.webhook_id, request.recording_id, now),
                )
            webhook_id = _NO_WEBHOOK_ID if request.webhook_id is None else request.webhook_id
            row = db.execute(
                "SELECT state FROM jobs WHERE recording_id = ?", (request.recording_id,)
            ).fetchone()
            offsets = None if request.offsets is None else orjson.dumps(request.offsets).decode()
            if row is None:
                db.execute(
                    "INSERT INTO jobs (recording_id, webhook_id, contact_id, codec, offsets, day,"
                    " state, created_at, updated_at, original_name, scope, source_ref)"
                    " VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?)",
                    (
                        request.recording_id,
                        webhook_id,
                        request.contact_id,
                        request.codec,
                        offsets,
                        request.day,
                        now,
                        now,
                        request.original_name,
                        request.scope,
                        request.source_ref,
                    ),
                )
                return Enqueued.ACCEPTED
            if row[0] == JobState.FAILED:
                # A new notification for a dead-lettered recording is the
                # operator's (or CXone's) way to say "try again": start afresh.
                db.execute(
                    "UPDATE jobs SET webhook_id = ?, contact_id = ?, codec = ?, offsets = ?,"
                    " day = ?, state = 'queued', attempts = 0, last_error = NULL,"
                    " checkpoint = NULL, updated_at = ?, original_name = ?, scope = ?,"
                    " source_ref = ? WHERE recording_id = ?",
                    (
                        webhook_id,
                        request.contact_id,
                        request.codec,
                        offsets,
                        request.day,
                        now,
                        request.original_name,
                        request.scope,
                        request.source_ref,
                        request.recording_id,
                    ),
                )
                return Enqueued.ACCEPTED
            return Enqueued.DUPLICATE

        return await self._write(body)

    async def requeue_running(self) -> int:
        def body(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "UPDATE jobs SET state = 'queued', updated_at = ? WHERE state = 'running'",
                (self._clock(),),
            )
            return cur.rowcount

        return await self._write(body)

    async def claim(self) -> Job | None:
        def body(db: sqlite3.Connection) -> Job | None:
            row = db.execute(
                "SELECT id, recording_id, contact_id, codec, offsets, day, attempts, checkpoint,"
                " original_name, scope, source_ref FROM jobs WHERE state = 'queued'"
                " ORDER BY id LIMIT 1"
            ).fetchone()
            if row is None:
                return None
            now = self._clock()
            db.execute(
                "UPDATE jobs SET state = 'running', updated_at = ? WHERE id = ?", (now, row[0])
            )
            cp = None if row[7] is None else Checkpoint.from_json(orjson.loads(row[7]))
            _run_started(db, row[0], now, cp)
            return Job(
                id=row[0],
                recording_id=row[1],
                contact_id=row[2],
                codec=row[3],
                offsets=None if row[4] is None else tuple(orjson.loads(row[4])),
                day=row[5],
                attempts=row[6],
                checkpoint=cp,
                original_name=row[8],
                scope="contact" if row[9] == "contact" else "recording",
                source_ref=row[10],
            )

        return await self._write(body)

    async def save_progress(
        self, job_id: int, attempts: int, checkpoint: Checkpoint | None, error: str | None
    ) -> None:
        cp = None if checkpoint is None else orjson.dumps(checkpoint.to_json()).decode()

        def body(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE jobs SET attempts = ?, checkpoint = ?,"
                " last_error = COALESCE(?, last_error), updated_at = ? WHERE id = ?",
                (attempts, cp, error, self._clock(), job_id),
            )

        await self._write(body)

    async def release(self, job_id: int) -> None:
        def body(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE jobs SET state = 'queued', updated_at = ?"
                " WHERE id = ? AND state = 'running'",
                (self._clock(), job_id),
            )

        await self._write(body)

    async def complete(
        self, job_id: int, attempts: int, result: dict[str, Any], announcement: bytes | None
    ) -> None:
        now = self._clock()

        def body(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE jobs SET state = 'completed', attempts = ?, result = ?, checkpoint = NULL,"
                " last_error = NULL, updated_at = ? WHERE id = ?",
                (attempts, orjson.dumps(result).decode(), now, job_id),
            )
            if announcement is not None:
                # Same transaction: a completed job always has its announcement.
                db.execute(
                    "INSERT INTO outbox (webhook_id, recording_id, body, next_at, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (f"msg_{uuid.uuid4().hex}", result["recordingId"], announcement, now, now),
                )

        await self._write(body)

    async def fail(self, job_id: int, attempts: int, error: str) -> None:
        def body(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE jobs SET state = 'failed', attempts = ?, last_error = ?, checkpoint = NULL,"
                " updated_at = ? WHERE id = ?",
                (attempts, error, self._clock(), job_id),
            )

        await self._write(body)

    # -- archive outbox ---------------------------------------------------

    async def due_announcements(self, now: float, limit: int) -> list[Announcement]:
        def body(db: sqlite3.Connection) -> list[Announcement]:
            rows = db.execute(
                "SELECT id, webhook_id, recording_id, body, attempts, next_at FROM outbox"
                " WHERE delivered_at IS NULL AND next_at <= ? ORDER BY next_at, id LIMIT ?",
                (now, limit),
            ).fetchall()
            return [Announcement(*row) for row in rows]

        return await self._write(body)

    async def delivered(self, announcement_id: int) -> None:
        def body(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE outbox SET delivered_at = ?, last_error = NULL WHERE id = ?",
                (self._clock(), announcement_id),
            )

        await self._write(body)

    async def reschedule(
        self, announcement_id: int, attempts: int, next_at: float, error: str
    ) -> None:
        def body(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE outbox SET attempts = ?, next_at = ?, last_error = ? WHERE id = ?",
                (attempts, next_at, error, announcement_id),
            )

        await self._write(body)

    async def next_announcement_at(self) -> float | None:
        def body(db: sqlite3.Connection) -> float | None:
            row = db.execute(
                "SELECT MIN(next_at) FROM outbox WHERE delivered_at IS NULL"
            ).fetchone()
            return None if row is None else row[0]

        return await self._write(body)

    async def backlog(self) -> tuple[int, float | None]:
        def body(db: sqlite3.Connection) -> tuple[int, float | None]:
            row = db.execute(
                "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE delivered_at IS NULL"
            ).fetchone()
            return row[0], row[1]

        return await self._write(body)

    # -- observation ------------------------------------------------------

    async def queued(self) -> tuple[int, float | None]:
        """How many jobs wait, and since when the longest-waiting one has."""

        def body(db: sqlite3.Connection) -> tuple[int, float | None]:
            row = db.execute(
                "SELECT COUNT(*), MIN(updated_at) FROM jobs WHERE state = 'queued'"
            ).fetchone()
            return row[0], row[1]

        return await self._write(body)

    async def counts(self) -> dict[str, int]:
        def body(db: sqlite3.Connection) -> dict[str, int]:
            out = {state.value: 0 for state in JobState}
            for state, n in db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state"):
                out[state] = n
            (backlog,) = db.execute(
                "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL"
            ).fetchone()
            out["archive_backlog"] = backlog
            return out

        return await self._write(body)

    async def healthy(self) -> bool:
        def body(db: sqlite3.Connection) -> bool:
            # A write proves more than a read: the disk is not full or read-only.
            db.execute("INSERT OR REPLACE INTO probe (id, at) VALUES (1, ?)", (self._clock(),))
            return True

        try:
            return await self._write(body)
        except JournalError:
            return False


def _run_started(db: sqlite3.Connection, job_id: int, now: float, cp: Checkpoint | None) -> None:
    db.execute(
        "INSERT OR REPLACE INTO runs (job_id, started_at, start_offset) VALUES (?, ?, ?)",
        (job_id, now, 0 if cp is None else cp.offset),
    )
