"""Group commit in the SQLite journal: many writes, one transaction, each caller's own answer.

Every test runs on a real SQLite file. To make a group of a known shape, a
second connection holds the database's write lock: the journal thread then
waits inside BEGIN IMMEDIATE with one group, while the next callers queue up
behind it and become the following group, all of them, as one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest

from cxstream.journal import Enqueued, JobRequest, JournalError, SqliteJournal
from tests.conftest import StartDaemon
from tests.harness import completed


def request(rid: str, wid: str | None = None) -> JobRequest:
    return JobRequest(
        webhook_id=wid or f"msg-{rid}",
        recording_id=rid,
        contact_id=None,
        codec=None,
        offsets=None,
        day="2026/11/24",
    )


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[SqliteJournal]:
    j = SqliteJournal(tmp_path / "journal.sqlite3", busy_timeout_s=10.0)
    await j.open()
    yield j
    await j.close()


async def until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        # Polled: the journal thread changes what is watched; it has no event to await.
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def held_thread(journal: SqliteJournal) -> AsyncIterator[asyncio.Task[Enqueued]]:
    """The journal thread busy with one enqueue (``lead``), stuck in BEGIN until exit.

    Enqueues made inside the block all queue behind it and form one group.
    """
    other = sqlite3.connect(journal.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    groups = journal.groups
    lead = asyncio.create_task(journal.enqueue(request("lead")))
    try:
        await until(lambda: journal.groups == groups + 1)
        yield lead
        # Every task created in the block takes its first step (the queue
        # append) before this one resumes: asyncio runs ready callbacks in order.
        await asyncio.sleep(0)
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_concurrent_enqueues_get_their_own_outcome_within_and_across_groups(
    journal: SqliteJournal,
) -> None:
    # Per recording: the first notification, CXone's retry of it (same
    # webhook-id) and a second notification (new webhook-id).
    calls = []
    for i in range(150):
        rid = f"rec-{i:03d}"
        calls += [request(rid), request(rid), request(rid, f"msg-{rid}-again")]
    random.Random(7).shuffle(calls)
    outcomes = await asyncio.gather(*(journal.enqueue(c) for c in calls))
    accepted: dict[str, int] = {}
    for call, outcome in zip(calls, outcomes, strict=True):
        accepted[call.recording_id] = accepted.get(call.recording_id, 0) + (
            outcome is Enqueued.ACCEPTED
        )
        assert outcome in (Enqueued.ACCEPTED, Enqueued.DUPLICATE)
    assert set(accepted.values()) == {1}, "each recording accepted exactly once"
    # Grouped: far fewer transactions than calls.
    assert journal.groups < len(calls) // 3
    # Across groups: every repeat, later, is a duplicate; nothing more was queued.
    again = await asyncio.gather(*(journal.enqueue(c) for c in calls[:50]))
    assert set(again) == {Enqueued.DUPLICATE}
    assert (await journal.counts())["queued"] == 150


async def test_a_repeat_inside_the_same_group_is_a_duplicate(journal: SqliteJournal) -> None:
    async with held_thread(journal) as lead:
        tasks = [
            asyncio.create_task(journal.enqueue(r))
            for r in (
                request("a"),
                request("a"),  # the same webhook again
                request("b"),
                request("a", "msg-a-2"),  # the same recording, a new webhook
                request("c"),
            )
        ]
    assert await lead is Enqueued.ACCEPTED
    outcomes = await asyncio.gather(*tasks)
    assert outcomes == [
        Enqueued.ACCEPTED,
        Enqueued.DUPLICATE,
        Enqueued.ACCEPTED,
        Enqueued.DUPLICATE,
        Enqueued.ACCEPTED,
    ]
    assert journal.groups == 2  # the lead's group, then all five together


async def test_a_group_that_cannot_commit_fails_every_caller_and_keeps_none(
    tmp_path: Path,
) -> None:
    journal = SqliteJournal(tmp_path / "journal.sqlite3", busy_timeout_s=0.2)
    await journal.open()
    other = sqlite3.connect(journal.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the write lock, held past the busy timeout
    calls = [request(f"rec-{i}") for i in range(20)]
    try:
        outcomes = await asyncio.gather(
            *(journal.enqueue(c) for c in calls), return_exceptions=True
        )
        assert all(isinstance(o, JournalError) for o in outcomes), outcomes
        assert "locked" in str(outcomes[0])
    finally:
        other.execute("ROLLBACK")
        other.close()
    # None of them was committed: each is new to the journal now.
    assert set(await asyncio.gather(*(journal.enqueue(c) for c in calls))) == {Enqueued.ACCEPTED}
    await journal.close()


async def test_a_request_whose_own_statement_fails_fails_alone(journal: SqliteJournal) -> None:
    with sqlite3.connect(journal.path, isolation_level=None) as other:
        other.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON jobs WHEN NEW.recording_id = 'poison'"
            " BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
        )
    other.close()
    async with held_thread(journal):
        tasks = [asyncio.create_task(journal.enqueue(request(rid))) for rid in ("a", "poison", "b")]
    a, poison, b = await asyncio.gather(*tasks, return_exceptions=True)
    assert (a, b) == (Enqueued.ACCEPTED, Enqueued.ACCEPTED)
    assert isinstance(poison, JournalError) and "poisoned" in str(poison)
    # The poisoned request left nothing behind, not even its webhook-id.
    counts = await journal.counts()
    assert counts["queued"] == 3  # lead, a, b
    with sqlite3.connect(journal.path) as db:
        ids = {row[0] for row in db.execute("SELECT webhook_id FROM webhooks")}
    assert ids == {"msg-lead", "msg-a", "msg-b"}


async def test_claims_checkpoints_and_enqueues_share_a_group_and_fail_alone(
    journal: SqliteJournal,
) -> None:
    await journal.enqueue(request("bad"))
    await journal.enqueue(request("good"))
    with sqlite3.connect(journal.path, isolation_level=None) as other:
        # A checkpoint no reader can parse: claiming this job is a bug-class error.
        other.execute("UPDATE jobs SET checkpoint = '{not json' WHERE recording_id = 'bad'")
    other.close()
    groups = journal.groups
    async with held_thread(journal):
        tasks = [
            asyncio.create_task(journal.claim()),  # takes "bad" (lowest id) and fails
            asyncio.create_task(journal.enqueue(request("new"))),
            asyncio.create_task(journal.save_progress(2, 1, None, "stalled")),  # "good"
            asyncio.create_task(journal.counts()),
        ]
    bad, new, saved, counts = await asyncio.gather(*tasks, return_exceptions=True)
    assert journal.groups == groups + 2  # the lead's group, then these four together
    assert isinstance(bad, orjson.JSONDecodeError)  # a bug surfaces as itself, not a 503
    assert new is Enqueued.ACCEPTED and saved is None
    # Read in the same transaction, after the units before it: the failed
    # claim left "bad" queued; bad, good, lead and new are waiting.
    assert isinstance(counts, dict) and counts["queued"] == 4 and counts["running"] == 0
    with sqlite3.connect(journal.path) as db:
        rows = dict(db.execute("SELECT recording_id, last_error FROM jobs"))
    assert rows["good"] == "stalled" and rows["bad"] is None


async def test_a_closed_journal_refuses_enqueues(journal: SqliteJournal) -> None:
    await journal.close()
    with pytest.raises(JournalError, match="closed"):
        await journal.enqueue(request("late"))


async def test_every_202_survives_a_kill_9_under_load(
    start_daemon: StartDaemon, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    daemon = await start_daemon(streams={"concurrency": 1})
    accepted: list[str] = []
    enough = asyncio.Event()

    async def send(i: int, sem: asyncio.Semaphore) -> None:
        rid = f"rec-{i:04d}"
        async with sem:
            if enough.is_set():
                return
            with contextlib.suppress(aiohttp.ClientError):
                status, _ = await daemon.post(http, completed(rid))
                if status == 202:
                    accepted.append(rid)
                    if len(accepted) >= 300:
                        enough.set()

    sem = asyncio.Semaphore(32)
    senders = asyncio.gather(*(send(i, sem) for i in range(600)))
    await asyncio.wait_for(enough.wait(), 30)
    await daemon.kill()  # SIGKILL with webhooks still in flight
    await senders
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite3") as db:
        journaled = {row[0] for row in db.execute("SELECT recording_id FROM jobs")}
    assert len(accepted) >= 300
    assert set(accepted) <= journaled
