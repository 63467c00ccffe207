"""The journal: where a job becomes durable before CXone ever hears of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cxstream.config import Config
from cxstream.journal.base import (
    Announcement,
    Checkpoint,
    Enqueued,
    Job,
    JobInfo,
    JobRequest,
    JobState,
    Journal,
    JournalError,
    JournalOps,
    LeaseLost,
    WakesWorkers,
)
from cxstream.journal.sqlite import SqliteJournal

if TYPE_CHECKING:
    from cxstream.journal.postgres import PostgresJournal

JOURNAL_FILE = "journal.sqlite3"
# The notifier delivers up to this many claimed announcements one after the
# other, each within archive.timeout_s (see notifier/archive.py).
_ANNOUNCE_BATCH = 16

__all__ = [
    "JOURNAL_FILE",
    "Announcement",
    "Checkpoint",
    "Enqueued",
    "Job",
    "JobInfo",
    "JobRequest",
    "JobState",
    "Journal",
    "JournalError",
    "JournalOps",
    "LeaseLost",
    "SqliteJournal",
    "WakesWorkers",
    "build_journal",
]


def build_journal(
    config: Config, on_commit: Callable[[float], None] | None = None
) -> SqliteJournal | PostgresJournal:
    """The configured backend, not yet opened (``await journal.open()``).

    ``on_commit`` hears each commit's latency (the SQLite journal's; PostgreSQL's
    commits are the server's to time)."""
    jc = config.journal
    if jc.backend != "postgres":
        return SqliteJournal(config.storage.state_dir / JOURNAL_FILE, on_commit=on_commit)
    # Imported here: psycopg is an optional dependency (the `postgres` extra).
    from cxstream.journal.postgres import PostgresJournal

    assert jc.dsn is not None  # config validation requires it for postgres
    return PostgresJournal(
        jc.dsn.reveal(),
        node=jc.node,
        lease_s=jc.lease_s,
        # A claimed batch of announcements stays this node's for as long as
        # delivering all of it may take; then any node may deliver the rest.
        outbox_hold_s=_ANNOUNCE_BATCH * config.archive.timeout_s + jc.lease_s,
        pool_size=min(32, config.streams.concurrency + 4),
    )
