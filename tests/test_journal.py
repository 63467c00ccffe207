"""The journal's behaviour, the same on both backends: SQLite on a real file and
PostgreSQL on a throwaway cluster (skipped when the server is not installed).

Idempotence, exclusivity, durability, the outbox. What only a shared journal
does (leases, several nodes) is in tests/test_journal_pg.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cxstream.journal import Checkpoint, Enqueued, JobRequest, JournalError, SqliteJournal

Opener = Callable[..., Awaitable[Any]]


def request(rid: str, wid: str | None = None, **kw: object) -> JobRequest:
    fields = {"contact_id": None, "codec": None, "offsets": None, "day": "2026/11/24", **kw}
    return JobRequest(webhook_id=wid or f"msg-{rid}", recording_id=rid, **fields)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Where a journal lives: a file path, or a fresh PostgreSQL database."""
    if request.param == "postgres":
        return "postgres", request.getfixturevalue("pg_dsn")
    return "sqlite", str(tmp_path / "state" / "journal.sqlite3")


@pytest.fixture
async def opener(store: tuple[str, str]) -> AsyncIterator[Opener]:
    """Opens a journal on the same store each call (a restart, or another node)."""
    opened: list[Any] = []

    async def open_(node: str = "node-a") -> Any:
        backend, where = store
        if backend == "sqlite":
            journal: Any = SqliteJournal(Path(where))
        else:
            from cxstream.journal.postgres import PostgresJournal

            journal = PostgresJournal(where, node=node, lease_s=30)
        await journal.open()
        opened.append(journal)
        return journal

    yield open_
    for journal in opened:
        await journal.close()


@pytest.fixture
async def journal(opener: Opener) -> Any:
    return await opener()


async def test_idempotent_on_webhook_id_and_on_recording(journal: Any) -> None:
    assert await journal.enqueue(request("r1")) is Enqueued.ACCEPTED
    assert await journal.enqueue(request("r1")) is Enqueued.DUPLICATE  # same webhook-id
    assert await journal.enqueue(request("r1", "other-id")) is Enqueued.DUPLICATE  # queued
    job = await journal.claim()
    assert job is not None and job.recording_id == "r1"
    assert await journal.enqueue(request("r1", "third-id")) is Enqueued.DUPLICATE  # running
    await journal.fail(job.id, 3, "recording_not_found")
    assert (await journal.counts())["failed"] == 1
    # A new notification for a dead letter starts it afresh.
    assert await journal.enqueue(request("r1", "fourth-id", codec="pcm")) is Enqueued.ACCEPTED
    again = await journal.claim()
    assert again is not None and again.attempts == 0 and again.codec == "pcm"
    await journal.complete(again.id, 1, {"recordingId": "r1"}, None)
    assert await journal.enqueue(request("r1", "fifth-id")) is Enqueued.DUPLICATE  # done
    assert await journal.claim() is None


async def test_concurrent_claims_never_share_a_job(journal: Any) -> None:
    for i in range(20):
        await journal.enqueue(request(f"r{i:02d}"))
    claimed = await asyncio.gather(*(journal.claim() for _ in range(30)))
    ids = [job.recording_id for job in claimed if job is not None]
    assert sorted(ids) == [f"r{i:02d}" for i in range(20)]
    assert claimed.count(None) == 10


async def test_state_survives_reopen_and_running_jobs_are_requeued(opener: Opener) -> None:
    first = await opener()
    await first.enqueue(request("r1", offsets=(0, 15)))
    job = await first.claim()
    assert job is not None
    cp = Checkpoint(codec="opus", done=1, batch=(15,), batch_start=100, offset=180)
    await first.save_progress(job.id, 2, cp, "stalled")
    await first.close()  # as good as a crash: every method is its own transaction

    second = await opener()  # the same node, restarted
    assert await second.requeue_running() == 1
    again = await second.claim()
    assert again is not None
    assert (again.offsets, again.attempts, again.checkpoint) == ((0, 15), 2, cp)


async def test_release_puts_a_job_back_with_its_checkpoint(journal: Any) -> None:
    await journal.enqueue(request("r1"))
    job = await journal.claim()
    cp = Checkpoint(codec="pcm", done=0, batch=(0,), batch_start=0, offset=4096)
    await journal.save_progress(job.id, 1, cp, None)
    await journal.release(job.id)
    assert (await journal.counts())["queued"] == 1
    again = await journal.claim()
    assert again.id == job.id and again.checkpoint == cp and again.attempts == 1


async def test_completion_and_its_announcement_are_one_transaction(journal: Any) -> None:
    await journal.enqueue(request("r1"))
    job = await journal.claim()
    assert job is not None
    await journal.complete(job.id, 1, {"recordingId": "r1"}, b'{"type":"recording.archived"}')
    (due,) = await journal.due_announcements(now=1e12, limit=10)
    assert due.recording_id == "r1" and due.body.startswith(b"{")
    await journal.reschedule(due.id, 1, next_at=1e12 + 60, error="http_503")
    assert await journal.due_announcements(now=1e12, limit=10) == []
    (later,) = await journal.due_announcements(now=1e12 + 61, limit=10)
    assert later.webhook_id == due.webhook_id and later.attempts == 1
    assert (await journal.backlog())[0] == 1
    await journal.delivered(later.id)
    assert (await journal.backlog())[0] == 0
    assert await journal.next_announcement_at() is None
    counts = await journal.counts()
    assert counts["completed"] == 1 and counts["archive_backlog"] == 0


async def test_a_closed_journal_is_unhealthy_not_a_crash(journal: Any) -> None:
    assert await journal.healthy()
    await journal.close()
    assert not await journal.healthy()
    with pytest.raises(JournalError, match="closed"):
        await journal.enqueue(request("late"))


async def test_an_unsigned_request_is_idempotent_on_its_name_alone(
    journal: SqliteJournal,
) -> None:
    """Bearer/basic webhooks carry no webhook-id: the job's name decides."""
    unsigned = JobRequest(
        webhook_id=None,
        recording_id="c-77",
        contact_id="c-77",
        codec=None,
        offsets=None,
        day="2026/11/24",
        scope="contact",
    )
    assert await journal.enqueue(unsigned) is Enqueued.ACCEPTED
    assert await journal.enqueue(unsigned) is Enqueued.DUPLICATE  # queued
    job = await journal.claim()
    assert job is not None and (job.recording_id, job.scope) == ("c-77", "contact")
    assert await journal.enqueue(unsigned) is Enqueued.DUPLICATE  # running
    await journal.fail(job.id, 1, "not_ready")
    assert await journal.enqueue(unsigned) is Enqueued.ACCEPTED  # a failed one, again
    # A signed request for another name still records its id; the unsigned ones none.
    assert await journal.enqueue(request("r-signed", "msg-1")) is Enqueued.ACCEPTED
    if not isinstance(journal, SqliteJournal):
        return  # the rows below are SQLite's own layout
    await journal.close()
    db = sqlite3.connect(journal.path)
    try:
        assert db.execute("SELECT webhook_id FROM webhooks").fetchall() == [("msg-1",)]
        rows = db.execute("SELECT recording_id, webhook_id FROM jobs ORDER BY id").fetchall()
        assert rows == [("c-77", ""), ("r-signed", "msg-1")]
    finally:
        db.close()


async def test_original_name_and_scope_reach_the_worker(journal: SqliteJournal) -> None:
    await journal.enqueue(
        request("conv_1-0123456789abcdef", original_name="conv/1", scope="contact")
    )
    job = await journal.claim()
    assert job is not None
    assert (job.original_name, job.scope) == ("conv/1", "contact")


# The jobs table as the first release created it, before original_name and scope.
_OLD_JOBS = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY, recording_id TEXT NOT NULL UNIQUE, webhook_id TEXT NOT NULL,
    contact_id TEXT, codec TEXT, offsets TEXT, day TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, checkpoint TEXT, result TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
INSERT INTO jobs (recording_id, webhook_id, day, state, created_at, updated_at)
VALUES ('rec-old', 'msg-old', '2026/11/23', 'queued', 0, 0);
"""


async def test_an_old_journal_gains_the_new_columns_and_keeps_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(_OLD_JOBS)
    db.close()
    for _ in range(2):  # the second open finds the columns there already
        journal = SqliteJournal(path)
        await journal.open()
        await journal.close()
    journal = SqliteJournal(path)
    await journal.open()
    try:
        old = await journal.claim()
        assert old is not None and old.recording_id == "rec-old"
        assert (old.scope, old.original_name) == ("recording", None)
        new = request("x_y-0123456789abcdef", original_name="x/y", scope="contact")
        assert await journal.enqueue(new) is Enqueued.ACCEPTED
        job = await journal.claim()
        assert job is not None and (job.original_name, job.scope) == ("x/y", "contact")
    finally:
        await journal.close()


async def test_a_dead_letter_asked_for_again_takes_the_new_request_whole(journal: Any) -> None:
    await journal.enqueue(request("r-ref", source_ref="old", scope="recording"))
    job = await journal.claim()
    await journal.fail(job.id, 3, "recording_gone")
    again = request("r-ref", "msg-again", source_ref="new", original_name="R REF")
    assert await journal.enqueue(again) is Enqueued.ACCEPTED
    job = await journal.claim()
    assert (job.source_ref, job.original_name, job.attempts) == ("new", "R REF", 0)
