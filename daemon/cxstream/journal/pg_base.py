"""The PostgreSQL journal's plumbing: pool, migrations, heartbeat, LISTEN, health.

Every method is one transaction on a pooled connection, shielded from a
cancelled caller. ``psycopg`` errors become ``JournalError`` with the DSN and
its password scrubbed from the text (the DSN is a secret). Leases are kept on
the database's clock, so the nodes' clocks never matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool, PoolClosed

from cxstream.journal.base import JournalError
from cxstream.journal.pg_schema import migrate
from cxstream.journal.pg_wake import JOBS_CHANNEL, Listener

T = TypeVar("T")
Conn = AsyncConnection[Any]
LEASE = "now() + %(lease)s * interval '1 second'"


class PgBase:
    """Connections, migrations, lease renewal, wake-ups and health."""

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
        # The jobs this process's workers run: the only leases the heartbeat renews.
        self.held: set[int] = set()
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
        """One line (libpq adds hints on lines of their own), no DSN, no password."""
        for secret in (self._dsn, self._password):
            if secret:
                text = text.replace(secret, "[redacted]")
        return " ".join(text.split())

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
        """Extend the lease of every job this process's workers hold; returns how many."""
        params = {"node": self.node, "lease": self.lease_s, "held": list(self.held)}

        async def body(conn: Conn) -> int:
            cur = await conn.execute(
                f"UPDATE jobs SET lease_until = {LEASE}"
                " WHERE state = 'running' AND owner = %(node)s AND id = ANY(%(held)s)",
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

    # -- observation ------------------------------------------------------

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
