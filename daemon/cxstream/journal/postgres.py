"""The journal on PostgreSQL: one queue shared by every node, through leases.

A claimed job carries its node (``owner``) and a lease (``lease_until``, on
the database's clock so that nodes' clocks never matter). A heartbeat renews
this node's leases every ``lease_s / 3``; a job whose owner stopped renewing
(kill -9, a lost host) is claimed by any node once its lease has run out. The
owner is part of every write about a running job, so a node that lost its
lease cannot save, complete or fail the job: it gets ``LeaseLost`` and its
transaction rolls back. A checkpoint describes a part file on its owner's
disk, so a job taken over by another node starts again from zero.

Idempotency rests on unique constraints (``webhooks.webhook_id``,
``jobs.recording_id``) with ``INSERT ... ON CONFLICT``, so two nodes answering
the same callback at once give one 202 and one duplicate. Every method is
one transaction (plumbing in pg_base.py, the outbox in pg_outbox.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from psycopg.types.json import Jsonb

from cxstream.journal.base import Checkpoint, Enqueued, Job, JobRequest, LeaseLost
from cxstream.journal.pg_base import LEASE, Conn
from cxstream.journal.pg_outbox import PgOutbox

JOB_COLUMNS = (
    "id, recording_id, contact_id, codec, offsets, day, attempts, checkpoint,"
    " original_name, scope, source_ref"
)
_MINE = "id = %(id)s AND state = 'running' AND owner = %(node)s"


def job_from_row(row: Any) -> Job:
    return Job(
        id=row[0],
        recording_id=row[1],
        contact_id=row[2],
        codec=row[3],
        offsets=None if row[4] is None else tuple(row[4]),
        day=row[5],
        attempts=row[6],
        checkpoint=None if row[7] is None else Checkpoint.from_json(row[7]),
        original_name=row[8],
        scope="contact" if row[9] == "contact" else "recording",
        source_ref=row[10],
    )


class PostgresJournal(PgOutbox):
    async def enqueue(self, request: JobRequest) -> Enqueued:
        params = {
            "wid": request.webhook_id,
            "rid": request.recording_id,
            "contact": request.contact_id,
            "codec": request.codec,
            "offsets": None if request.offsets is None else Jsonb(list(request.offsets)),
            "day": request.day,
            "node": self.node,
            "original": request.original_name,
            "scope": request.scope,
            "ref": request.source_ref,
        }

        async def body(conn: Conn) -> Enqueued:
            if request.webhook_id is not None:
                seen = await conn.execute(
                    "INSERT INTO webhooks (webhook_id, recording_id, node)"
                    " VALUES (%(wid)s, %(rid)s, %(node)s) ON CONFLICT DO NOTHING",
                    params,
                )
                if seen.rowcount == 0:
                    return Enqueued.DUPLICATE
            # A new notification for a dead-lettered recording is the operator's
            # (or CXone's) way to say "try again": it starts afresh. Any other
            # existing row makes this a duplicate.
            cur = await conn.execute(
                "INSERT INTO jobs"
                " (recording_id, webhook_id, contact_id, codec, offsets, day, state,"
                " original_name, scope, source_ref) VALUES"
                " (%(rid)s, %(wid)s, %(contact)s, %(codec)s, %(offsets)s, %(day)s, 'queued',"
                " %(original)s, %(scope)s, %(ref)s)"
                " ON CONFLICT (recording_id) DO UPDATE SET webhook_id = EXCLUDED.webhook_id,"
                " original_name = EXCLUDED.original_name, scope = EXCLUDED.scope,"
                " source_ref = EXCLUDED.source_ref,"
                " contact_id = EXCLUDED.contact_id, codec = EXCLUDED.codec,"
                " offsets = EXCLUDED.offsets, day = EXCLUDED.day, state = 'queued',"
                " attempts = 0, last_error = NULL, checkpoint = NULL, result = NULL,"
                " owner = NULL, lease_until = NULL, updated_at = now()"
                " WHERE jobs.state = 'failed'",
                params,
            )
            if cur.rowcount == 0:
                return Enqueued.DUPLICATE
            await self._notify(conn)
            return Enqueued.ACCEPTED

        return await self._tx(body)

    async def requeue_running(self) -> int:
        """At start: this node's own running jobs (it was killed) and any lapsed
        lease go back to the queue. Other live nodes' jobs are left alone."""

        async def body(conn: Conn) -> int:
            cur = await conn.execute(
                "UPDATE jobs SET state = 'queued', lease_until = NULL, updated_at = now()"
                " WHERE state = 'running' AND (owner = %s OR lease_until < now())",
                (self.node,),
            )
            if cur.rowcount:
                await self._notify(conn)
            return cur.rowcount

        return await self._tx(body)

    async def claim(self) -> Job | None:
        params = {"node": self.node, "lease": self.lease_s}

        async def body(conn: Conn) -> Job | None:
            # Two index-backed probes rather than one OR. A job whose owner
            # stopped renewing its lease goes first: it was accepted before
            # anything still queued, and must not wait for a backlog to drain.
            for probe in (
                "SELECT id FROM jobs WHERE state = 'running' AND lease_until < now()"
                " ORDER BY lease_until",
                "SELECT id FROM jobs WHERE state = 'queued' ORDER BY id",
            ):
                cur = await conn.execute(f"{probe} LIMIT 1 FOR UPDATE SKIP LOCKED")
                found = await cur.fetchone()
                if found is not None:
                    break
            else:
                return None
            # The checkpoint is kept only if it describes this node's own part file.
            cur = await conn.execute(
                "UPDATE jobs SET state = 'running',"
                " checkpoint = CASE WHEN owner = %(node)s THEN checkpoint END,"
                f" owner = %(node)s, lease_until = {LEASE}, updated_at = now()"
                f" WHERE id = %(id)s RETURNING {JOB_COLUMNS}",
                {**params, "id": found[0]},
            )
            return job_from_row(await cur.fetchone())

        job = await self._tx(body)
        if job is not None:
            # Held only once the caller has it: a claim whose caller was cancelled
            # is not renewed, its lease lapses and any node (this one too) takes it.
            self.held.add(job.id)
        return job

    async def still_mine(self, recording_ids: Iterable[str]) -> set[str]:
        """Of these recordings, those whose checkpoint this node may still use:
        queued or running with this node as owner. Any other local part file
        is stale (the job was taken over, or ended) and can be removed."""
        ids = list(recording_ids)

        async def body(conn: Conn) -> set[str]:
            cur = await conn.execute(
                "SELECT recording_id FROM jobs WHERE recording_id = ANY(%s)"
                " AND state IN ('queued', 'running') AND owner = %s",
                (ids, self.node),
            )
            return {row[0] for row in await cur.fetchall()}

        return await self._tx(body)

    async def save_progress(
        self, job_id: int, attempts: int, checkpoint: Checkpoint | None, error: str | None
    ) -> None:
        params = {
            "id": job_id,
            "node": self.node,
            "lease": self.lease_s,
            "attempts": attempts,
            "cp": None if checkpoint is None else Jsonb(checkpoint.to_json()),
            "error": error,
        }

        async def body(conn: Conn) -> None:
            cur = await conn.execute(
                "UPDATE jobs SET attempts = %(attempts)s, checkpoint = %(cp)s,"
                " last_error = COALESCE(%(error)s, last_error),"
                f" lease_until = {LEASE}, updated_at = now() WHERE {_MINE}",
                params,
            )
            if cur.rowcount == 0:
                raise LeaseLost(f"job {job_id} is no longer held by node {self.node}")

        try:
            await self._tx(body)
        except LeaseLost:
            self.held.discard(job_id)  # someone else's now: stop renewing it
            raise

    async def release(self, job_id: int) -> None:
        async def body(conn: Conn) -> None:
            # A lost lease makes this a no-op: the job is already someone else's.
            cur = await conn.execute(
                "UPDATE jobs SET state = 'queued', lease_until = NULL, updated_at = now()"
                f" WHERE {_MINE}",
                {"id": job_id, "node": self.node},
            )
            if cur.rowcount:
                await self._notify(conn)

        await self._tx(body)
        self.held.discard(job_id)

    async def complete(
        self, job_id: int, attempts: int, result: dict[str, Any], announcement: bytes | None
    ) -> None:
        now = self._clock()
        params = {"id": job_id, "node": self.node, "attempts": attempts, "result": Jsonb(result)}

        async def body(conn: Conn) -> None:
            # The owner stays on the row: it records which node archived it.
            cur = await conn.execute(
                "UPDATE jobs SET state = 'completed', attempts = %(attempts)s,"
                " result = %(result)s, checkpoint = NULL, last_error = NULL,"
                f" lease_until = NULL, updated_at = now() WHERE {_MINE}",
                params,
            )
            if cur.rowcount == 0:
                raise LeaseLost(f"job {job_id} is no longer held by node {self.node}")
            if announcement is not None:
                # Same transaction: a completed job always has its announcement.
                await conn.execute(
                    "INSERT INTO outbox (webhook_id, recording_id, body, next_at, created_at)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (f"msg_{uuid.uuid4().hex}", result["recordingId"], announcement, now, now),
                )

        try:
            await self._tx(body)
        finally:
            self.held.discard(job_id)

    async def fail(self, job_id: int, attempts: int, error: str) -> None:
        async def body(conn: Conn) -> None:
            cur = await conn.execute(
                "UPDATE jobs SET state = 'failed', attempts = %(attempts)s,"
                " last_error = %(error)s, checkpoint = NULL, lease_until = NULL,"
                f" updated_at = now() WHERE {_MINE}",
                {"id": job_id, "node": self.node, "attempts": attempts, "error": error},
            )
            if cur.rowcount == 0:
                raise LeaseLost(f"job {job_id} is no longer held by node {self.node}")

        try:
            await self._tx(body)
        finally:
            self.held.discard(job_id)
