"""The operations CLI on the shared PostgreSQL journal: what an operator of
several nodes runs against the database they share."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from cxstream.cli import main
from cxstream.journal import JobRequest, JobState
from cxstream.journal.pg_ops import PgJournalOps
from cxstream.journal.postgres import PostgresJournal
from tests.harness import write_config
from tests.test_ops_cli import FAKE_SIM


def request(rid: str) -> JobRequest:
    return JobRequest(
        webhook_id=f"msg-{rid}",
        recording_id=rid,
        contact_id="c-1",
        codec=None,
        offsets=None,
        day="2026/11/24",
    )


async def _fill(dsn: str) -> None:
    """On node-a: rec-done completed, rec-dead failed, rec-busy running, rec-wait queued."""
    journal = PostgresJournal(dsn, node="node-a")
    await journal.open()
    try:
        for rid in ("rec-done", "rec-dead", "rec-busy", "rec-wait"):
            await journal.enqueue(request(rid))
        done = await journal.claim()
        assert done is not None
        await journal.complete(done.id, 1, {"recordingId": "rec-done", "path": "/x"}, None)
        dead = await journal.claim()
        assert dead is not None
        await journal.fail(dead.id, 3, "recording_not_found")
        assert await journal.claim() is not None  # rec-busy stays running
    finally:
        await journal.close()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_list_show_and_retry_on_the_shared_journal(
    tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_fill(pg_dsn))
    config = str(write_config(tmp_path, FAKE_SIM, journal={"backend": "postgres", "dsn": pg_dsn}))
    code, out, err = cli(capsys, "jobs", "list", "--config", config, "--json")
    assert code == 0, err
    states = {row["recordingId"]: row["state"] for row in orjson.loads(out)}
    assert states == {
        "rec-done": "completed",
        "rec-dead": "failed",
        "rec-busy": "running",
        "rec-wait": "queued",
    }
    code, out, _ = cli(capsys, "jobs", "show", "--config", config, "rec-dead", "--json")
    assert code == 0 and orjson.loads(out)["error"] == "recording_not_found"
    code, out, _ = cli(capsys, "jobs", "retry", "--config", config, "--state", "failed", "--json")
    assert code == 0 and "rec-dead" in out
    code, out, _ = cli(capsys, "jobs", "list", "--config", config, "--state", "queued", "--json")
    assert sorted(row["recordingId"] for row in orjson.loads(out)) == ["rec-dead", "rec-wait"]
    # The DSN (with its password) is never printed.
    code, out, err = cli(capsys, "status", "--config", config)
    assert code == 0 and pg_dsn not in out + err


async def test_take_claims_under_a_lease_and_never_a_running_job(pg_dsn: str) -> None:
    await _fill(pg_dsn)
    journal = PostgresJournal(pg_dsn, node="node-a-cli")
    await journal.open()
    try:
        ops = PgJournalOps(journal)
        assert await ops.take(request("rec-busy")) is JobState.RUNNING
        assert await ops.take(request("rec-done")) is JobState.COMPLETED
        taken = await ops.take(request("rec-dead"))  # a dead letter: afresh
        assert not isinstance(taken, JobState) and taken.attempts == 0
        fresh = await ops.take(request("rec-new"))
        assert not isinstance(fresh, JobState) and fresh.recording_id == "rec-new"
        info = await ops.job("rec-new")
        assert info is not None and info.state is JobState.RUNNING
        assert await ops.count(JobState.RUNNING, 0) == 3
    finally:
        await journal.close()
