"""The journal's behaviour, the same on both backends: SQLite on a real file and
PostgreSQL on a throwaway cluster (skipped when the server is not installed).

Idempotence, exclusivity, durability, the outbox. What only a shared journal
does (leases, several nodes) is in tests/test_journal_pg.py.
"""

from __future__ import annotations

import asyncio
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
