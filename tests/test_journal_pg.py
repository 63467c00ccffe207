"""What only the shared PostgreSQL journal does: several nodes on one queue.

Each "node" is a PostgresJournal of its own (its own pool, listener and
heartbeat) on the same throwaway database, exactly as separate daemons are.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from cxstream.journal import Checkpoint, Enqueued, JobRequest, JobState, JournalError, LeaseLost
from tests.test_journal import request

psycopg = pytest.importorskip("psycopg")
from cxstream.journal.pg_schema import LATEST  # noqa: E402
from cxstream.journal.postgres import PostgresJournal  # noqa: E402

Node = Callable[..., Awaitable[PostgresJournal]]


@pytest.fixture
async def node(pg_dsn: str) -> AsyncIterator[Node]:
    opened: list[PostgresJournal] = []

    async def open_(name: str, lease_s: float = 30.0, **kw: Any) -> PostgresJournal:
        journal = PostgresJournal(pg_dsn, node=name, lease_s=lease_s, **kw)
        await journal.open()
        opened.append(journal)
        return journal

    yield open_
    for journal in opened:
        await journal.close()


def sql(dsn: str, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Look at (or nudge) the database from outside, as an operator would."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(query, params or None)
        return cur.fetchall() if cur.description else []


async def until(check: Callable[[], Awaitable[Any]], within_s: float) -> Any:
    """Poll a condition (not a fixed sleep): its first truthy result, or fail."""
    deadline = time.monotonic() + within_s
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {within_s}s"
        await asyncio.sleep(0.05)


async def test_two_nodes_receiving_the_same_callback_answer_once(node: Node) -> None:
    a, b = await node("a"), await node("b")
    for i in range(15):
        # Same webhook-id on both nodes at once; then another id, same recording.
        same = await asyncio.gather(a.enqueue(request(f"r{i}")), b.enqueue(request(f"r{i}")))
        assert sorted(same) == [Enqueued.ACCEPTED, Enqueued.DUPLICATE]
        other = await asyncio.gather(
            a.enqueue(request(f"s{i}", f"x-{i}")), b.enqueue(request(f"s{i}", f"y-{i}"))
        )
        assert sorted(other) == [Enqueued.ACCEPTED, Enqueued.DUPLICATE]
    assert (await a.counts())["queued"] == 30


async def test_a_webhook_without_an_id_rests_on_the_recording(node: Node) -> None:
    a = await node("a")
    bare = JobRequest(None, "r1", None, None, None, "2026/11/24")  # type: ignore[arg-type]
    assert await a.enqueue(bare) is Enqueued.ACCEPTED
    assert await a.enqueue(bare) is Enqueued.DUPLICATE


async def test_two_nodes_claiming_never_share_a_job(node: Node) -> None:
    a, b = await node("a"), await node("b")
    for i in range(30):
        await a.enqueue(request(f"r{i:02d}"))
    claims = await asyncio.gather(*(n.claim() for _ in range(20) for n in (a, b)))
    jobs = [job for job in claims if job is not None]
    assert len(jobs) == 30 and len({job.id for job in jobs}) == 30
    owners = sql(a._dsn, "SELECT owner, COUNT(*) FROM jobs GROUP BY owner")
    assert sum(n for _, n in owners) == 30 and {o for o, _ in owners} <= {"a", "b"}


async def test_the_heartbeat_keeps_a_running_job_from_other_nodes(node: Node, pg_dsn: str) -> None:
    a, b = await node("a", lease_s=0.6), await node("b", lease_s=0.6)
    await a.enqueue(request("r1"))
    job = await a.claim()
    assert job is not None
    (first,) = sql(pg_dsn, "SELECT lease_until FROM jobs")

    async def renewed_twice() -> bool:
        (now,) = sql(pg_dsn, "SELECT lease_until FROM jobs")
        return (now[0] - first[0]).total_seconds() > 0.6  # past the first lease's end

    await until(renewed_twice, within_s=3)
    assert await b.claim() is None  # the lease would have run out without the heartbeat


async def test_a_job_whose_node_died_is_taken_over_within_two_leases(node: Node) -> None:
    lease = 2.0
    a, b = await node("a", lease_s=lease), await node("b", lease_s=lease)
    await a.enqueue(request("r1"))
    job = await a.claim()
    cp = Checkpoint(codec="opus", done=1, batch=(15,), batch_start=10, offset=20)
    await a.save_progress(job.id, 2, cp, "stalled")
    await a.close()  # no release, no more heartbeats: as after kill -9
    died = time.monotonic()
    assert await b.claim() is None  # the lease still holds
    taken = await until(b.claim, within_s=2 * lease)
    assert time.monotonic() - died < 2 * lease
    # Same job and attempts; the checkpoint was a's part file, so b starts afresh.
    assert (taken.id, taken.attempts, taken.checkpoint) == (job.id, 2, None)
    # When a comes back, its part file for r1 is stale: the job is b's now.
    back = await node("a", lease_s=lease)
    assert await back.still_mine(["r1"]) == set()
    assert await b.still_mine(["r1", "unknown"]) == {"r1"}


async def test_a_lapsed_job_goes_before_the_queue(node: Node, pg_dsn: str) -> None:
    a, b = await node("a"), await node("b")
    await a.enqueue(request("r1"))
    job = await a.claim()
    for rid in ("r2", "r3"):
        await b.enqueue(request(rid))
    sql(pg_dsn, "UPDATE jobs SET lease_until = now() - interval '1 second' WHERE owner = 'a'")
    taken = await b.claim()
    assert taken is not None and taken.id == job.id  # not r2: a backlog does not delay it


async def test_a_node_that_lost_its_lease_writes_nothing_more(node: Node, pg_dsn: str) -> None:
    a, b = await node("a", lease_s=60), await node("b", lease_s=60)
    await a.enqueue(request("r1"))
    job = await a.claim()
    # a stalls past its lease (a long GC pause, a partition): b takes the job.
    sql(pg_dsn, "UPDATE jobs SET lease_until = now() - interval '1 second'")
    taken = await b.claim()
    assert taken is not None and taken.id == job.id
    cp = Checkpoint(codec="opus", done=0, batch=(0,), batch_start=0, offset=5)
    with pytest.raises(LeaseLost):
        await a.save_progress(job.id, 1, cp, None)
    with pytest.raises(LeaseLost):
        await a.complete(job.id, 1, {"recordingId": "r1"}, b"{}")
    with pytest.raises(LeaseLost):
        await a.fail(job.id, 1, "stalled")
    await a.release(job.id)  # a no-op: the job is b's
    assert issubclass(LeaseLost, JournalError)
    assert sql(pg_dsn, "SELECT state, owner FROM jobs") == [("running", "b")]
    assert sql(pg_dsn, "SELECT COUNT(*) FROM outbox") == [(0,)]  # rolled back with it
    await b.complete(taken.id, 1, {"recordingId": "r1"}, b"{}")
    assert sql(pg_dsn, "SELECT state, owner FROM jobs") == [("completed", "b")]


async def test_a_restart_requeues_only_its_own_jobs_and_lapsed_ones(
    node: Node, pg_dsn: str
) -> None:
    a, b, c = await node("a"), await node("b"), await node("c")
    for rid in ("ra", "rb", "rc"):
        await a.enqueue(request(rid))
    for n in (a, b, c):
        assert await n.claim() is not None
    await a.close()
    await c.close()
    sql(pg_dsn, "UPDATE jobs SET lease_until = now() - interval '1 second' WHERE owner = 'c'")
    restarted = await node("a")
    assert await restarted.requeue_running() == 2  # its own, and c's lapsed lease
    states = dict(sql(pg_dsn, "SELECT owner, state FROM jobs"))
    assert states == {"a": "queued", "b": "running", "c": "queued"}


async def test_migrations_are_safe_when_nodes_start_at_once(pg_dsn: str) -> None:
    nodes = [PostgresJournal(pg_dsn, node=f"n{i}") for i in range(3)]
    try:
        await asyncio.gather(*(n.open() for n in nodes))
        versions = sql(pg_dsn, "SELECT version FROM schema_migrations ORDER BY version")
        assert versions == [(v,) for v in range(1, LATEST + 1)]
        assert await nodes[2].enqueue(request("r1")) is Enqueued.ACCEPTED
    finally:
        for n in nodes:
            await n.close()
    again = PostgresJournal(pg_dsn, node="n0")
    await again.open()  # idempotent: nothing left to apply
    await again.close()
    sql(pg_dsn, "INSERT INTO schema_migrations (version) VALUES (%s)", LATEST + 1)
    newer = PostgresJournal(pg_dsn, node="old")
    with pytest.raises(JournalError, match="newer than this cxstream"):
        await newer.open()


async def test_a_job_queued_on_one_node_wakes_another(node: Node) -> None:
    a, b = await node("a"), await node("b")
    woken = asyncio.Event()
    b.on_work(woken.set)
    with pytest.raises(TimeoutError):  # nothing queued: no wake-up
        async with asyncio.timeout(0.3):
            await b.wait_for_work()
    waiter = asyncio.create_task(b.wait_for_work())
    await asyncio.sleep(0)  # let the waiter register before the job is queued
    await a.enqueue(request("r1"))
    async with asyncio.timeout(5):
        await waiter
        await woken.wait()
    # Woken at all proves the notification: wait_for_work has no polling of its own.


async def test_notifications_come_back_after_the_connection_is_cut(node: Node, pg_dsn: str) -> None:
    a, b = await node("a"), await node("b")
    sql(
        pg_dsn,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    # Pooled connections the server cut are replaced; the listener reconnects.
    assert await a.enqueue(request("r1")) is Enqueued.ACCEPTED

    async def notified() -> bool:
        waiter = asyncio.create_task(b.wait_for_work())
        await asyncio.sleep(0)
        await a.enqueue(request(f"r{time.monotonic_ns()}"))
        try:
            async with asyncio.timeout(0.5):
                await waiter
            return True
        except TimeoutError:
            return False

    await until(notified, within_s=10)


async def test_an_announcement_is_delivered_by_one_node_at_a_time(node: Node) -> None:
    a, b = await node("a", outbox_hold_s=120), await node("b", outbox_hold_s=120)
    await a.enqueue(request("r1"))
    job = await a.claim()
    await a.complete(job.id, 1, {"recordingId": "r1"}, b'{"n":1}')
    now = time.time()
    got = await asyncio.gather(a.due_announcements(now, 10), b.due_announcements(now, 10))
    assert sorted(len(rows) for rows in got) == [0, 1]
    holder, other = (a, b) if got[0] else (b, a)
    # While the holder delivers, nobody else may; if it dies, anyone may later.
    assert await other.due_announcements(now + 60, 10) == []
    (again,) = await other.due_announcements(now + 121, 10)
    assert again.webhook_id == (got[0] or got[1])[0].webhook_id
    # A late reschedule from the first holder cannot undo a delivery.
    await other.delivered(again.id)
    await holder.reschedule(again.id, 1, now, "http_503")
    assert await holder.due_announcements(now + 1e6, 10) == []


async def test_the_password_never_reaches_an_error(pg_cluster: Any) -> None:
    dsn = f"postgresql://postgres:S3cretPassw0rd@127.0.0.1:{pg_cluster.port}/no_such_db"
    journal = PostgresJournal(dsn, node="a", connect_timeout_s=2)
    with pytest.raises(JournalError) as caught:
        await journal.open()
    assert "S3cretPassw0rd" not in str(caught.value)
    assert "no_such_db" in str(caught.value)  # but the reason is there


async def test_the_heartbeat_renews_only_jobs_this_process_holds(node: Node) -> None:
    a = await node("a")
    for rid in ("r1", "r2"):
        await a.enqueue(request(rid))
    first = await a.claim()
    assert first is not None
    assert await a.renew_leases() == 1
    await a.release(first.id)
    assert await a.renew_leases() == 0  # handed back: no longer renewed
    second = await a.claim()
    assert second is not None and await a.renew_leases() == 1
    await a.complete(second.id, 1, {"recordingId": second.recording_id}, None)
    assert await a.renew_leases() == 0


async def test_the_cli_takes_a_queued_job_without_another_nodes_checkpoint(
    node: Node,
) -> None:
    from cxstream.journal.pg_ops import PgJournalOps

    a, cli = await node("a"), await node("b-cli")
    await a.enqueue(request("r1"))
    job = await a.claim()
    assert job is not None
    cp = Checkpoint(codec="pcm", done=1, batch=(15,), batch_start=44, offset=9000)
    await a.save_progress(job.id, 0, cp, None)
    await a.release(job.id)  # queued again, with a's checkpoint of a's part file
    taken = await PgJournalOps(cli).take(request("r1"))
    assert not isinstance(taken, JobState) and taken.checkpoint is None
