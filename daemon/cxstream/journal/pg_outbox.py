"""The PostgreSQL journal's archive outbox and counts (PostgresJournal builds on it).

Announcements are delivered at least once, and by one node at a time: a node
claims due rows with ``FOR UPDATE SKIP LOCKED`` and moves their ``next_at``
``outbox_hold_s`` ahead, so no other node picks them up meanwhile; should it
die mid-delivery, the rows fall due again for any node when the hold ends.
Times here are epoch seconds, as the notifier counts them.
"""

from __future__ import annotations

from cxstream.journal.base import Announcement, JobState
from cxstream.journal.pg_base import Conn, PgBase


class PgOutbox(PgBase):
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

    async def queued(self) -> tuple[int, float | None]:
        """How many jobs wait, and since when (epoch seconds) the longest-waiting one has."""

        async def body(conn: Conn) -> tuple[int, float | None]:
            cur = await conn.execute(
                "SELECT COUNT(*), EXTRACT(EPOCH FROM MIN(updated_at))::float8"
                " FROM jobs WHERE state = 'queued'"
            )
            row = await cur.fetchone()
            if row is None:
                return 0, None
            return int(row[0]), None if row[1] is None else float(row[1])

        return await self._tx(body)

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
