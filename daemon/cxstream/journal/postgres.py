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
one transaction on a pooled connection; ``psycopg`` errors become
``JournalError`` with the DSN's password scrubbed from the text.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolClosed

from cxstream.journal.base import (
    Announcement,
    Checkpoint,
    Enqueued,
    Job,
    JobRequest,
    JobState,
    JournalError,
    LeaseLost,
)
from cxstream.journal.pg_schema import migrate
from cxstream.journal.pg_wake import JOBS_CHANNEL, Listener

T = TypeVar("T")
Conn = AsyncConnection[Any]
_JOB_COLUMNS = "id, recording_id, contact_id, codec, offsets, day, attempts, checkpoint"
_LEASE = "now() + %(lease)s * interval '1 second'"
_MINE = "id = %(id)s AND state = 'running' AND owner = %(node)s"


def _job(row: Any) -> Job:
    return Job(
        id=row[0],
        recording_id=row[1],
        contact_id=row[2],
        codec=row[3],
        offsets=None if row[4] is None else tuple(row[4]),
        day=row[5],
        attempts=row[6],
        checkpoint=None if row[7] is None else Checkpoint.from_json(row[7]),
    )


class PostgresJournal:
    def __init__(
        self,
        dsn: str,
        *,
        node: str | None = None,
        lease_s: float = 30.0,
        outbox_hold_s: float = 600.0,
        pool_size: int = 10,
        connect_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node or socket.gethostname()
        self.lease_s = lease_s
        self.location = "postgresql"  # host, port and database once open; never the DSN
        self._dsn = dsn
        self._outbox_hold_s = outbox_hold_s
        self._pool_size = pool_size
        self._connect_timeout_s = connect_timeout_s
        self._clock = clock
        try:
            password = conninfo_to_dict(dsn).get("password")
        except psycopg.ProgrammingError:
            raise JournalError("journal.dsn is not a valid libpq connection string") from None
        self._password = str(password) if password else None
        self._kwargs: dict[str, Any] = {
            "connect_timeout": max(1, round(connect_timeout_s)),
            "application_name": f"cxstream@{self.node}"[:63],
            # A silently dead peer must surface as an error, not a hung LISTEN.
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._listener = Listener(dsn, JOBS_CHANNEL, self._kwargs, self._scrub)
        self._heartbeat: asyncio.Task[None] | None = None

    # -- plumbing ---------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in (self._dsn, self._password):
            if secret:
                text = text.replace(secret, "[redacted]")
        return text

    async def open(self) -> None:
        """Connect, migrate, then pool, listen and beat; a failure says why, once."""
        try:
            # One direct connection first: its error names the cause (wrong
            # database, refused password), where a pool would only time out.
            conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True, **self._kwargs)
            async with conn:
                await migrate(conn)
                info = conn.info
                self.location = f"postgresql://{info.host}:{info.port}/{info.dbname}"
        except (psycopg.Error, JournalError) as exc:
            reason = self._scrub(str(exc))
            raise JournalError(f"cannot open the journal database: {reason}") from None
        pool: AsyncConnectionPool[Conn] = AsyncConnectionPool(
            self._dsn,
            min_size=1,
            max_size=self._pool_size,
            kwargs={**self._kwargs, "autocommit": True},
            open=False,
            timeout=self._connect_timeout_s,
            check=AsyncConnectionPool.check_connection,
            name="cxstream-journal",
        )
        await pool.open()
        self._pool = pool
        self._listener.start()
        # Listening before the first claim, so no notification of this start is missed.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._connect_timeout_s):
                await self._listener.connected.wait()
        self._heartbeat = asyncio.create_task(self._beat(), name="cxstream-journal-heartbeat")

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        await self._listener.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _tx(self, body: Callable[[Conn], Awaitable[T]]) -> T:
        pool = self._pool
        if pool is None:
            raise JournalError("journal is closed")

        async def run() -> T:
            async with pool.connection() as conn, conn.transaction():
                return await body(conn)

        try:
            # Shielded: a transaction handed to the database completes (or rolls
            # back) as a whole, and a cancelled caller does not break the connection.
            return await asyncio.shield(run())
        except PoolClosed:
            raise JournalError("journal is closed") from None
        except psycopg.Error as exc:
            raise JournalError(f"{exc.__class__.__name__}: {self._scrub(str(exc))}") from None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            # Not fatal: if renewals keep failing the leases lapse, another
            # node takes the jobs, and this node's writes get LeaseLost.
            with contextlib.suppress(JournalError):
                await self.renew_leases()

    # -- leases and wake-ups ----------------------------------------------

    async def renew_leases(self) -> int:
        """Extend the lease of every job this node runs; returns how many."""
        params = {"node": self.node, "lease": self.lease_s}

        async def body(conn: Conn) -> int:
            cur = await conn.execute(
                f"UPDATE jobs SET lease_until = {_LEASE}"
                " WHERE state = 'running' AND owner = %(node)s",
                params,
            )
            await conn.execute(
                "INSERT INTO nodes (node, seen_at) VALUES (%(node)s, now())"
                " ON CONFLICT (node) DO UPDATE SET seen_at = now()",
                params,
            )
            return cur.rowcount

        return await self._tx(body)

    def on_work(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever any node queues a job (a hint: claim to find out)."""
        self._listener.subscribe(callback)

    async def wait_for_work(self) -> None:
        """Until a job is queued on any node; bound it with ``asyncio.timeout``."""
        await self._listener.wait()

    @staticmethod
    async def _notify(conn: Conn) -> None:
        # Delivered on commit only, so a woken worker always finds the job.
        await conn.execute("SELECT pg_notify(%s, '')", (JOBS_CHANNEL,))

    # -- jobs -------------------------------------------------------------

    async def enqueue(self, request: JobRequest) -> Enqueued:
        params = {
            "wid": request.webhook_id,
            "rid": request.recording_id,
            "contact": request.contact_id,
            "codec": request.codec,
            "offsets": None if request.offsets is None else Jsonb(list(request.offsets)),
            "day": request.day,
            "node": self.node,
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
                " (recording_id, webhook_id, contact_id, codec, offsets, day, state) VALUES"
                " (%(rid)s, %(wid)s, %(contact)s, %(codec)s, %(offsets)s, %(day)s, 'queued')"
                " ON CONFLICT (recording_id) DO UPDATE SET webhook_id = EXCLUDED.webhook_id,"
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
            # Two index-backed probes rather than one OR: queued jobs first,
            # then a running job whose owner stopped renewing its lease.
            for probe in (
                "SELECT id FROM jobs WHERE state = 'queued' ORDER BY id",
                "SELECT id FROM jobs WHERE state = 'running' AND lease_until < now()"
                " ORDER BY lease_until",
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
                f" owner = %(node)s, lease_until = {_LEASE}, updated_at = now()"
                f" WHERE id = %(id)s RETURNING {_JOB_COLUMNS}",
                {**params, "id": found[0]},
            )
            return _job(await cur.fetchone())

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
                f" lease_until = {_LEASE}, updated_at = now() WHERE {_MINE}",
                params,
            )
            if cur.rowcount == 0:
                raise LeaseLost(f"job {job_id} is no longer held by node {self.node}")

        await self._tx(body)

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

        await self._tx(body)

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

        await self._tx(body)

    # -- archive outbox ---------------------------------------------------

    async def due_announcements(self, now: float, limit: int) -> list[Announcement]:
        """Claim due rows for this node: ``next_at`` moves ``outbox_hold_s`` ahead,
        so no other node delivers them meanwhile (and any node will once that
        passes, should this one die mid-delivery)."""
        params = {"now": now, "limit": limit, "hold": self._outbox_hold_s, "node": self.node}

        async def body(conn: Conn) -> list[Announcement]:
            cur = await conn.execute(
                "WITH due AS (SELECT id FROM outbox WHERE delivered_at IS NULL"
                " AND next_at <= %(now)s ORDER BY next_at, id LIMIT %(limit)s"
                " FOR UPDATE SKIP LOCKED)"
                " UPDATE outbox AS o SET next_at = %(now)s + %(hold)s, owner = %(node)s"
                " FROM due WHERE o.id = due.id"
                " RETURNING o.id, o.webhook_id, o.recording_id, o.body, o.attempts, o.next_at",
                params,
            )
            rows = await cur.fetchall()
            return sorted((Announcement(*row) for row in rows), key=lambda a: a.id)

        return await self._tx(body)

    async def delivered(self, announcement_id: int) -> None:
        async def body(conn: Conn) -> None:
            await conn.execute(
                "UPDATE outbox SET delivered_at = %s, last_error = NULL WHERE id = %s",
                (self._clock(), announcement_id),
            )

        await self._tx(body)

    async def reschedule(
        self, announcement_id: int, attempts: int, next_at: float, error: str
    ) -> None:
        async def body(conn: Conn) -> None:
            await conn.execute(
                "UPDATE outbox SET attempts = %s, next_at = %s, last_error = %s, owner = NULL"
                " WHERE id = %s AND delivered_at IS NULL",
                (attempts, next_at, error, announcement_id),
            )

        await self._tx(body)

    async def next_announcement_at(self) -> float | None:
        async def body(conn: Conn) -> float | None:
            cur = await conn.execute("SELECT MIN(next_at) FROM outbox WHERE delivered_at IS NULL")
            row = await cur.fetchone()
            return None if row is None else row[0]

        return await self._tx(body)

    async def backlog(self) -> tuple[int, float | None]:
        async def body(conn: Conn) -> tuple[int, float | None]:
            cur = await conn.execute(
                "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE delivered_at IS NULL"
            )
            row = await cur.fetchone()
            assert row is not None
            return int(row[0]), row[1]

        return await self._tx(body)

    # -- observation ------------------------------------------------------

    async def counts(self) -> dict[str, int]:
        async def body(conn: Conn) -> dict[str, int]:
            out = {state.value: 0 for state in JobState}
            cur = await conn.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state")
            for state, n in await cur.fetchall():
                out[state] = int(n)
            cur = await conn.execute("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")
            row = await cur.fetchone()
            out["archive_backlog"] = 0 if row is None else int(row[0])
            return out

        return await self._tx(body)

    async def healthy(self) -> bool:
        async def body(conn: Conn) -> bool:
            # A write proves more than a read: not a read-only standby, not full.
            await conn.execute(
                "INSERT INTO nodes (node, seen_at) VALUES (%s, now())"
                " ON CONFLICT (node) DO UPDATE SET seen_at = now()",
                (self.node,),
            )
            return True

        try:
            return await self._tx(body)
        except JournalError:
            return False
