"""The PostgreSQL journal's schema, as numbered migrations applied at start.

Every node runs ``migrate`` when it opens the journal. The whole check-and-
apply is one transaction under a transaction-scoped advisory lock, so nodes
starting at once queue behind each other: the first applies what is missing,
the others then find nothing to do. A database migrated by a newer cxstream
is refused rather than written with an older idea of its tables.

To change the schema, append a migration; never edit one that has shipped.
"""

from __future__ import annotations

from typing import Final

from psycopg import AsyncConnection

from cxstream.journal.base import JournalError

# An arbitrary constant naming "cxstream schema migrations" among advisory locks.
MIGRATION_LOCK: Final = 0x63787374_7265616D & 0x7FFFFFFFFFFFFFFF

MIGRATIONS: Final[tuple[tuple[int, str], ...]] = (
    (
        1,
        """
CREATE TABLE jobs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recording_id  TEXT NOT NULL UNIQUE,
    webhook_id    TEXT,
    contact_id    TEXT,
    codec         TEXT,
    offsets       JSONB,
    day           TEXT NOT NULL,
    state         TEXT NOT NULL
                  CHECK (state IN ('queued', 'running', 'completed', 'failed')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    checkpoint    JSONB,
    result        JSONB,
    owner         TEXT,
    lease_until   TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX jobs_queued ON jobs (id) WHERE state = 'queued';
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_owner ON jobs (owner) WHERE state = 'running';
CREATE TABLE webhooks (
    webhook_id    TEXT PRIMARY KEY,
    recording_id  TEXT NOT NULL,
    node          TEXT NOT NULL,
    received_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE outbox (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id    TEXT NOT NULL UNIQUE,
    recording_id  TEXT NOT NULL,
    body          BYTEA NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    next_at       DOUBLE PRECISION NOT NULL,
    created_at    DOUBLE PRECISION NOT NULL,
    last_error    TEXT,
    owner         TEXT,
    delivered_at  DOUBLE PRECISION
);
CREATE INDEX outbox_due ON outbox (next_at, id) WHERE delivered_at IS NULL;
CREATE TABLE nodes (
    node          TEXT PRIMARY KEY,
    seen_at       TIMESTAMPTZ NOT NULL
);
""",
    ),
    (
        2,
        """
ALTER TABLE jobs ADD COLUMN original_name TEXT;
ALTER TABLE jobs ADD COLUMN scope TEXT NOT NULL DEFAULT 'recording';
ALTER TABLE jobs ADD COLUMN source_ref TEXT;
""",
    ),
)
LATEST: Final = MIGRATIONS[-1][0]


async def migrate(conn: AsyncConnection[object]) -> tuple[int, ...]:
    """Bring the schema to ``LATEST``; returns the versions this call applied."""
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT version FROM schema_migrations")
        applied = {int(row[0]) for row in await cur.fetchall()}  # type: ignore[index]
        if applied and max(applied) > LATEST:
            raise JournalError(
                f"the journal database is at schema version {max(applied)}, newer than this"
                f" cxstream knows ({LATEST}): upgrade cxstream on this node"
            )
        for version, sql in MIGRATIONS:
            if version in applied:
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied_now.append(version)
    return tuple(applied_now)
