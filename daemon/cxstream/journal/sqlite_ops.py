"""``JournalOps`` on the SQLite journal: what ``cxstream status`` and ``cxstream jobs`` read
and write while a daemon runs on the same file.

WAL lets these reads run beside the daemon's writes; the writes (retry, take)
are one short ``BEGIN IMMEDIATE`` transaction each, and the connection's
``busy_timeout`` waits out the daemon's own. Kept apart from ``sqlite.py`` so
the daemon's hot path reads in one sitting.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from cxstream.journal.base import Checkpoint, Job, JobInfo, JobRequest, JobState
from cxstream.journal.sqlite import SqliteJournal, _run_started

_COLUMNS = (
    "j.recording_id, j.state, j.attempts, j.last_error, j.contact_id, j.codec, j.day,"
    " j.created_at, j.updated_at, j.checkpoint, j.result, r.started_at, r.start_offset"
)
_FROM = "FROM jobs j LEFT JOIN runs r ON r.job_id = j.id"


def _info(row: tuple[Any, ...]) -> JobInfo:
    cp = None if row[9] is None else Checkpoint.from_json(orjson.loads(row[9]))
    result = None if row[10] is None else orjson.loads(row[10])
    running = row[1] == JobState.RUNNING
    return JobInfo(
        recording_id=row[0],
        state=JobState(row[1]),
        attempts=row[2],
        error=row[3],
        contact_id=row[4],
        codec=row[5] if cp is None else cp.codec,
        day=row[6],
        created_at=row[7],
        updated_at=row[8],
        offset=None if cp is None else cp.offset,
        result=result if isinstance(result, dict) else None,
        run_started_at=row[11] if running else None,
        run_start_offset=row[12] if running else None,
    )


class SqliteJournalOps:
    def __init__(self, journal: SqliteJournal) -> None:
        self._j = journal

    async def jobs(self, state: JobState | None, since: float | None, limit: int) -> list[JobInfo]:
        where: list[str] = []
        args: list[str | float] = []
        if state is not None:
            where.append("j.state = ?")
            args.append(state.value)
        if since is not None:
            where.append("j.updated_at >= ?")
            args.append(since)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = f"SELECT {_COLUMNS} {_FROM}{clause} ORDER BY j.updated_at DESC, j.id DESC LIMIT ?"

        def body(db: sqlite3.Connection) -> list[JobInfo]:
            return [_info(row) for row in db.execute(sql, (*args, limit))]

        return await self._j._read(body)

    async def job(self, recording_id: str) -> JobInfo | None:
        def body(db: sqlite3.Connection) -> JobInfo | None:
            row = db.execute(
                f"SELECT {_COLUMNS} {_FROM} WHERE j.recording_id = ?", (recording_id,)
            ).fetchone()
            return None if row is None else _info(row)

        return await self._j._read(body)

    async def count(self, state: JobState, since: float) -> int:
        def body(db: sqlite3.Connection) -> int:
            (n,) = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE state = ? AND updated_at >= ?",
                (state.value, since),
            ).fetchone()
            return int(n)

        return await self._j._read(body)

    async def retry(self, recording_ids: Sequence[str] | None) -> list[str]:
        now = self._j._clock()
        # As a fresh webhook for a dead letter does: from zero, with a full budget.
        reset = (
            "UPDATE jobs SET state = 'queued', attempts = 0, last_error = NULL,"
            " checkpoint = NULL, updated_at = ? WHERE state = 'failed'"
        )

        def body(db: sqlite3.Connection) -> list[str]:
            if recording_ids is None:
                ids = [
                    r for (r,) in db.execute("SELECT recording_id FROM jobs WHERE state = 'failed'")
                ]
                db.execute(reset, (now,))
                return ids
            done = []
            for rid in dict.fromkeys(recording_ids):
                if db.execute(reset + " AND recording_id = ?", (now, rid)).rowcount:
                    done.append(rid)
            return done

        return await self._j._write(body)

    async def take(self, request: JobRequest) -> Job | JobState:
        now = self._j._clock()
        offsets = None if request.offsets is None else orjson.dumps(request.offsets).decode()

        def body(db: sqlite3.Connection) -> Job | JobState:
            row = db.execute(
                "SELECT id, state, attempts, checkpoint, contact_id, codec, offsets, day,"
                " original_name, scope, source_ref FROM jobs WHERE recording_id = ?",
                (request.recording_id,),
            ).fetchone()
            if row is None:
                cur = db.execute(
                    "INSERT INTO jobs (recording_id, webhook_id, contact_id, codec, offsets, day,"
                    " state, created_at, updated_at, original_name, scope, source_ref)"
                    " VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                    (
                        request.recording_id,
                        request.webhook_id or "",
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
                assert cur.lastrowid is not None
                _run_started(db, cur.lastrowid, now, None)
                return Job(
                    id=cur.lastrowid,
                    recording_id=request.recording_id,
                    contact_id=request.contact_id,
                    codec=request.codec,
                    offsets=request.offsets,
                    day=request.day,
                    attempts=0,
                    checkpoint=None,
                    original_name=request.original_name,
                    scope=request.scope,
                    source_ref=request.source_ref,
                )
            job_id, state = row[0], JobState(row[1])
            if state in (JobState.RUNNING, JobState.COMPLETED):
                return state
            if state is JobState.FAILED:
                db.execute(
                    "UPDATE jobs SET state = 'running', attempts = 0, last_error = NULL,"
                    " checkpoint = NULL, updated_at = ? WHERE id = ?",
                    (now, job_id),
                )
                _run_started(db, job_id, now, None)
                return _job(job_id, request.recording_id, row, 0, None)
            # Queued: run it here, exactly as a worker would have, checkpoint included.
            cp = None if row[3] is None else Checkpoint.from_json(orjson.loads(row[3]))
            db.execute(
                "UPDATE jobs SET state = 'running', updated_at = ? WHERE id = ?", (now, job_id)
            )
            _run_started(db, job_id, now, cp)
            return _job(job_id, request.recording_id, row, row[2], cp)

        return await self._j._write(body)


def _job(
    job_id: int, recording_id: str, row: tuple[Any, ...], attempts: int, cp: Checkpoint | None
) -> Job:
    """A Job from take()'s row: contact_id, codec, offsets, day, original_name, scope, ref."""
    return Job(
        id=job_id,
        recording_id=recording_id,
        contact_id=row[4],
        codec=row[5],
        offsets=None if row[6] is None else tuple(orjson.loads(row[6])),
        day=row[7],
        attempts=attempts,
        checkpoint=cp,
        original_name=row[8],
        scope="contact" if row[9] == "contact" else "recording",
        source_ref=row[10],
    )
