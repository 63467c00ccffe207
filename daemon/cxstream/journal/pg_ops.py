"""``JournalOps`` on the PostgreSQL journal: ``cxstream status`` / ``jobs`` / ``fetch``
against the database several nodes share.

Each call is one short transaction beside the daemons' own. ``take`` claims a
recording for this process under its own node name and lease, exactly as a
worker's claim would, so no daemon runs it at the same time; the journal's
heartbeat keeps the lease while ``cxstream fetch`` runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from cxstream.journal.base import Checkpoint, Job, JobInfo, JobRequest, JobState
from cxstream.journal.pg_base import LEASE, Conn
from cxstream.journal.postgres import JOB_COLUMNS, PostgresJournal, job_from_row

_COLUMNS = (
    "recording_id, state, attempts, last_error, contact_id, codec, day,"
    " EXTRACT(EPOCH FROM created_at)::float8, EXTRACT(EPOCH FROM updated_at)::float8,"
    " checkpoint, result"
)


def _info(row: Any) -> JobInfo:
    cp = None if row[9] is None else Checkpoint.from_json(row[9])
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
        result=row[10] if isinstance(row[10], dict) else None,
        # The shared journal keeps no per-run row: a rate is not shown for it.
        run_started_at=None,
        run_start_offset=None,
    )


class PgJournalOps:
    def __init__(self, journal: PostgresJournal) -> None:
        self._j = journal

    async def jobs(self, state: JobState | None, since: float | None, limit: int) -> list[JobInfo]:
        where, args = [], {"limit": limit}
        if state is not None:
            where.append("state = %(state)s")
            args["state"] = state.value  # type: ignore[assignment]
        if since is not None:
            where.append("updated_at >= to_timestamp(%(since)s)")
            args["since"] = since  # type: ignore[assignment]
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        sql = (
            f"SELECT {_COLUMNS} FROM jobs{clause} ORDER BY updated_at DESC, id DESC LIMIT %(limit)s"
        )

        async def body(conn: Conn) -> list[JobInfo]:
            cur = await conn.execute(sql, args)
            return [_info(row) for row in await cur.fetchall()]

        return await self._j._tx(body)

    async def job(self, recording_id: str) -> JobInfo | None:
        async def body(conn: Conn) -> JobInfo | None:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE recording_id = %s", (recording_id,)
            )
            row = await cur.fetchone()
            return None if row is None else _info(row)

        return await self._j._tx(body)

    async def count(self, state: JobState, since: float) -> int:
        async def body(conn: Conn) -> int:
            cur = await conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE state = %s AND updated_at >= to_timestamp(%s)",
                (state.value, since),
            )
            row = await cur.fetchone()
            return 0 if row is None else int(row[0])

        return await self._j._tx(body)

    async def retry(self, recording_ids: Sequence[str] | None) -> list[str]:
        # As a fresh webhook for a dead letter does: from zero, with a full budget.
        reset = (
            "UPDATE jobs SET state = 'queued', attempts = 0, last_error = NULL,"
            " checkpoint = NULL, owner = NULL, lease_until = NULL, updated_at = now()"
            " WHERE state = 'failed'"
        )

        async def body(conn: Conn) -> list[str]:
            if recording_ids is None:
                cur = await conn.execute(reset + " RETURNING recording_id")
            else:
                cur = await conn.execute(
                    reset + " AND recording_id = ANY(%s) RETURNING recording_id",
                    (list(dict.fromkeys(recording_ids)),),
                )
            done = [row[0] for row in await cur.fetchall()]
            if done:
                await self._j._notify(conn)
            return done

        return await self._j._tx(body)

    async def take(self, request: JobRequest) -> Job | JobState:
        params = {
            "rid": request.recording_id,
            "wid": request.webhook_id,
            "contact": request.contact_id,
            "codec": request.codec,
            "offsets": None if request.offsets is None else Jsonb(list(request.offsets)),
            "day": request.day,
            "node": self._j.node,
            "lease": self._j.lease_s,
            "original": request.original_name,
            "scope": request.scope,
            "ref": request.source_ref,
        }

        async def body(conn: Conn) -> Job | JobState:
            cur = await conn.execute(
                "SELECT state FROM jobs WHERE recording_id = %(rid)s FOR UPDATE", params
            )
            row = await cur.fetchone()
            if row is None:
                cur = await conn.execute(
                    "INSERT INTO jobs (recording_id, webhook_id, contact_id, codec, offsets, day,"
                    " state, owner, lease_until, original_name, scope, source_ref) VALUES"
                    " (%(rid)s, %(wid)s, %(contact)s, %(codec)s, %(offsets)s, %(day)s,"
                    f" 'running', %(node)s, {LEASE}, %(original)s, %(scope)s, %(ref)s)"
                    f" RETURNING {JOB_COLUMNS}",
                    params,
                )
                return job_from_row(await cur.fetchone())
            state = JobState(row[0])
            if state is JobState.COMPLETED:
                return state
            if state is JobState.RUNNING:
                return state  # a node holds it (or its lease is about to lapse)
            fresh = state is JobState.FAILED
            cur = await conn.execute(
                # As claim(): a checkpoint is kept only if it describes this node's own
                # part file (SET reads the row as it was, owner included).
                "UPDATE jobs SET state = 'running',"
                f" owner = %(node)s, lease_until = {LEASE}, updated_at = now(),"
                + (
                    " attempts = 0, last_error = NULL, checkpoint = NULL"
                    if fresh
                    else " checkpoint = CASE WHEN owner = %(node)s THEN checkpoint END"
                )
                + f" WHERE recording_id = %(rid)s RETURNING {JOB_COLUMNS}",
                params,
            )
            return job_from_row(await cur.fetchone())

        taken = await self._j._tx(body)
        if isinstance(taken, Job):
            self._j.held.add(taken.id)  # its lease is renewed while `fetch` runs it
        return taken
