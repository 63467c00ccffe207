"""The operations CLI on a real journal file: status, jobs list/show/retry, fetch.

Most run in process on a journal filled through the journal's own API; one
test retries a dead letter with the CLI (a process) while a daemon (another
process) runs on the same journal, and sees it completed without a restart.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from cxstream.cli import main
from cxstream.journal import Checkpoint, JobRequest, JobState, SqliteJournal
from cxstream.journal.sqlite_ops import SqliteJournalOps
from cxstream.ops import fmt
from cxstream.ops.fetch import _bar, _Screen
from cxstream.sim.server import SimServer
from tests.harness import Daemon, completed, write_config

FAKE_SIM = SimpleNamespace(
    base_url="http://127.0.0.1:9/cx",
    token_url="http://127.0.0.1:9/token",
    archive_url="http://127.0.0.1:9/archive",
)


def request(rid: str) -> JobRequest:
    return JobRequest(
        webhook_id=f"msg-{rid}",
        recording_id=rid,
        contact_id="c-1",
        codec=None,
        offsets=None,
        day="2026/11/24",
    )


async def _fill(path: Path, clock: list[float]) -> None:
    """rec-done completed, rec-dead failed, rec-busy running with a checkpoint, rec-wait queued."""
    journal = SqliteJournal(path, clock=lambda: clock[0])
    await journal.open()
    for rid in ("rec-done", "rec-dead", "rec-busy", "rec-wait"):
        await journal.enqueue(request(rid))
    done = await journal.claim()
    assert done is not None
    await journal.complete(
        done.id, 1, {"recordingId": "rec-done", "bytes": 1234, "path": "/x"}, None
    )
    dead = await journal.claim()
    assert dead is not None
    await journal.fail(dead.id, 3, "recording_not_found")
    busy = await journal.claim()
    assert busy is not None
    clock[0] += 4.0  # four seconds into its run, 8 MiB are durable
    cp = Checkpoint(codec="pcm", done=1, batch=(15,), batch_start=44, offset=8 * 1024 * 1024)
    await journal.save_progress(busy.id, 1, cp, "stalled")
    await journal.close()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    audit = tmp_path / "audit.ndjson"
    cfg = write_config(tmp_path, FAKE_SIM, audit={"path": str(audit)})
    clock = [time.time() - 60]
    asyncio.run(_fill(tmp_path / "state" / "journal.sqlite3", clock))
    lines = [
        {"ts": "t1", "level": "info", "event": "webhook.accepted", "recording_id": "rec-dead"},
        {"ts": "t2", "level": "info", "event": "recording.started", "recording_id": "rec-done"},
        {"ts": "t3", "level": "error", "event": "recording.failed", "recording_id": "rec-dead"},
    ]
    audit.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines) + b"not json rec-dead\n")
    return cfg


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_jobs_list_json_has_the_documented_fields(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "jobs", "list", "--config", str(config), "--json")
    assert code == 0
    jobs = {j["recordingId"]: j for j in orjson.loads(out)}
    assert set(jobs) == {"rec-done", "rec-dead", "rec-busy", "rec-wait"}
    for job in jobs.values():
        assert {"recordingId", "state", "attempts", "error", "updatedAt"} <= set(job)
        assert job["updatedAt"].endswith("Z")
    assert jobs["rec-dead"] | {"updatedAt": None, "createdAt": None} == {
        "recordingId": "rec-dead",
        "state": "failed",
        "attempts": 3,
        "error": "recording_not_found",
        "contactId": "c-1",
        "codec": None,
        "day": "2026/11/24",
        "bytes": None,
        "path": None,
        "createdAt": None,
        "updatedAt": None,
    }
    assert jobs["rec-done"]["bytes"] == 1234 and jobs["rec-busy"]["bytes"] == 8 * 1024 * 1024


def test_jobs_list_filters_by_state_and_since(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = str(config)
    code, out, _ = run(capsys, "jobs", "list", "--config", c, "--state", "failed", "--json")
    assert code == 0 and [j["recordingId"] for j in orjson.loads(out)] == ["rec-dead"]
    _, out, _ = run(capsys, "jobs", "list", "--config", c, "--since", "1h", "--json")
    assert len(orjson.loads(out)) == 4
    _, out, _ = run(capsys, "jobs", "list", "--config", c, "--since", "2999-01-01", "--json")
    assert orjson.loads(out) == []
    code, out, _ = run(capsys, "jobs", "list", "--config", c, "--limit", "2")
    assert code == 0 and out.startswith("RECORDING") and len(out.splitlines()) == 3


def test_status_shows_streams_with_bytes_and_rate_queue_and_failures(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "status", "--config", str(config), "--json")
    assert code == 0
    doc = orjson.loads(out)
    assert doc["queued"] == 1 and 55 < doc["oldestQueuedAgeSeconds"] < 600
    assert (doc["failedLastHour"], doc["completedLastHour"], doc["archiveBacklog"]) == (1, 1, 0)
    (busy,) = doc["active"]
    assert busy["recordingId"] == "rec-busy" and busy["bytes"] == 8 * 1024 * 1024
    assert busy["rateBytesPerSecond"] == 2 * 1024 * 1024  # 8 MiB in the run's first 4 s
    code, out, _ = run(capsys, "status", "--config", str(config))
    assert code == 0
    assert "queued     1 (oldest waiting 1m" in out
    assert "rec-busy" in out and "8.0 MiB" in out and "2.0 MiB/s" in out


def test_jobs_show_has_the_audit_history_of_that_recording_only(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "jobs", "show", "--config", str(config), "rec-dead", "--json")
    assert code == 0
    doc = orjson.loads(out)
    assert doc["state"] == "failed" and doc["error"] == "recording_not_found"
    assert [a["event"] for a in doc["audit"]] == ["webhook.accepted", "recording.failed"]
    code, out, _ = run(capsys, "jobs", "show", "--config", str(config), "rec-dead")
    assert code == 0 and "recording.failed" in out and "recording.started" not in out
    code, _, err = run(capsys, "jobs", "show", "--config", str(config), "rec-nope")
    assert code == 1 and "no job" in err


def test_retry_requeues_failed_jobs_only(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = str(config)
    code, out, err = run(capsys, "jobs", "retry", "--config", c, "rec-dead", "rec-done", "nope")
    assert code == 1
    doc_err = err.splitlines()
    assert "re-queued 1: rec-dead" in out
    assert any("rec-done: is completed, not failed" in ln for ln in doc_err)
    assert any("nope: not found" in ln for ln in doc_err)
    _, out, _ = run(capsys, "jobs", "show", "--config", c, "rec-dead", "--json")
    job = orjson.loads(out)
    assert (job["state"], job["attempts"], job["error"]) == ("queued", 0, None)
    # Nothing left to retry: --state failed succeeds with nothing to do.
    code, out, _ = run(capsys, "jobs", "retry", "--config", c, "--state", "failed", "--json")
    assert code == 0 and orjson.loads(out) == {"requeued": [], "skipped": []}


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["jobs", "retry"], "one of them"),
        (["jobs", "retry", "rec-1", "--state", "failed"], "one of them"),
        (["jobs", "list", "--since", "yesterday"], "--since"),
        (["jobs", "list", "--state", "lost"], "--state"),
        (["jobs", "list", "--limit", "0"], "--limit"),
        (["fetch", "../etc/passwd"], "not a valid recording id"),
        (["jobs"], "choose from"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    config: Path, capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        code = main([*argv, "--config", str(config)])
        raise SystemExit(code)
    _, err = capsys.readouterr()
    assert exc.value.code == 2 and needle in err and len(err.strip().splitlines()) == 1, err


def test_no_journal_and_bad_config_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = write_config(tmp_path, FAKE_SIM)
    code, _, err = run(capsys, "status", "--config", str(cfg))
    assert code == 2 and "no journal at" in err
    assert not (tmp_path / "state" / "journal.sqlite3").exists()  # looked, did not create
    bad = tmp_path / "bad.toml"
    bad.write_text("[streams]\nconcurrency = 0\n")
    code, _, err = run(capsys, "jobs", "list", "--config", str(bad))
    assert code == 2 and err.startswith("cxstream: config: cxone.client_id")


def test_read_commands_need_no_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # As the operator runs them: the credentials are the service's, not in the TOML.
    cfg = tmp_path / "cxstream.toml"
    cfg.write_text(
        '[cxone]\nbase_url = "https://cx.example"\ntoken_url = "https://cx.example/t"\n'
        'client_id = "x"\nclient_secret_file = "/nonexistent/secret"\n'
        f'[storage]\ndir = "{tmp_path}/rec"\nstate_dir = "{tmp_path}/state"\n'
    )
    asyncio.run(_fill(tmp_path / "state" / "journal.sqlite3", [time.time()]))
    code, out, _ = run(capsys, "jobs", "list", "--config", str(cfg), "--json")
    assert code == 0 and len(orjson.loads(out)) == 4
    code, _, err = run(capsys, "fetch", "--config", str(cfg), "rec-wait")
    assert code == 2 and "secret" in err  # fetch talks to CXone: it does need them


def test_since_parsing() -> None:
    now = 1_800_000_000.0
    assert fmt.parse_since("90s", now) == now - 90
    assert fmt.parse_since("2h", now) == now - 7200
    assert fmt.parse_since("1.5d", now) == now - 129600
    assert fmt.parse_since("2026-11-24T10:00:00Z") == 1795514400.0
    assert fmt.parse_since("2026-11-24") == 1795478400.0
    with pytest.raises(ValueError, match="duration"):
        fmt.parse_since("-5m", now)


def test_progress_bar_and_screen() -> None:
    assert _bar(512 * 1024, 1024 * 1024, 2048, 65).startswith("[############------------]  50.0%")
    assert "1:05" in _bar(512 * 1024, 1024 * 1024, 2048, 65)
    assert _bar(3 * 1024, None, 1024, 5) == "3.0 KiB  1.0 KiB/s  0:05"
    err = io.StringIO()
    screen = _Screen(err, tty=True, file=None)
    screen.draw("[bar]")
    screen.write(
        b'{"ts":"t","level":"info","event":"recording.started","codec":"pcm",'
        b'"resumed_bytes":10,"recording_id":"r"}\n'
    )
    assert screen.resumed == 10
    # The audit line is printed above the bar, which is then drawn again.
    assert err.getvalue().endswith("info    recording.started codec=pcm resumed_bytes=10\n[bar]")


# -- against the simulator -------------------------------------------------------------


async def _cli(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cxstream",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_fetch_in_the_foreground_through_the_daemons_code_path(
    tmp_path: Path, sim: SimServer
) -> None:
    sim.add_recording({"id": "rec-fg", "segments": 2, "codecs": ["opus"]})
    audit = tmp_path / "audit.ndjson"
    cfg = str(write_config(tmp_path, sim, audit={"path": str(audit)}))
    journal = SqliteJournal(tmp_path / "state" / "journal.sqlite3")
    await journal.open()  # a journal exists once a daemon has run
    await journal.close()
    code, out, err = await _cli("fetch", "--config", cfg, "rec-fg", "--json")
    assert code == 0, err
    doc = orjson.loads(out)
    assert doc["state"] == "completed" and doc["result"]["sha256"]
    path = Path(doc["path"])
    assert path.read_bytes() == sim.body("rec-fg", "opus")
    # Its audit lines are in the trail (and were shown on stderr) like a worker's.
    events = [orjson.loads(x)["event"] for x in audit.read_bytes().splitlines()]
    assert events[-1] == "recording.completed" and "recording.started" in events
    assert '"recording.completed"' in err
    # The announcement waits in the outbox for the daemon's notifier.
    journal = SqliteJournal(tmp_path / "state" / "journal.sqlite3")
    await journal.open()
    assert (await journal.backlog())[0] == 1
    await journal.close()
    # Again: already archived, nothing fetched.
    requests = sim.state.recording_stats["rec-fg"].stream_requests
    code, _, err = await _cli("fetch", "--config", cfg, "rec-fg")
    assert code == 0 and "already archived" in err
    assert sim.state.recording_stats["rec-fg"].stream_requests == requests
    # A recording CXone does not have: failed, exit 1, its error on stdout.
    code, out, _ = await _cli("fetch", "--config", cfg, "rec-absent")
    assert code == 1 and "failed rec-absent: recording_not_found" in out


async def test_dead_letter_retried_with_the_cli_while_the_daemon_runs(
    tmp_path: Path, sim: SimServer, http: Any
) -> None:
    cfg = write_config(tmp_path, sim)
    daemon = await Daemon(cfg).start()
    try:
        status, _ = await daemon.post(http, completed("rec-late"))
        assert status == 202
        await daemon.wait_event("recording.failed", recording_id="rec-late")
        code, out, _ = await _cli(
            "jobs", "list", "--config", str(cfg), "--state", "failed", "--json"
        )
        assert code == 0 and [j["recordingId"] for j in orjson.loads(out)] == ["rec-late"]
        sim.add_recording({"id": "rec-late", "segments": 1, "codecs": ["opus"]})
        code, out, _ = await _cli("jobs", "retry", "--config", str(cfg), "rec-late")
        assert code == 0 and "re-queued 1: rec-late" in out
        # Picked up by the same running daemon (its pool polls the journal): no restart.
        done = await daemon.wait_event("recording.completed", recording_id="rec-late")
        assert done["attempts"] == 1
        code, out, _ = await _cli("status", "--config", str(cfg), "--json")
        assert code == 0 and orjson.loads(out)["failedLastHour"] == 0
    finally:
        assert await daemon.stop() == 0


def test_journal_ops_take_is_exclusive(tmp_path: Path) -> None:
    async def body() -> None:
        journal = SqliteJournal(tmp_path / "j.sqlite3")
        await journal.open()
        ops = SqliteJournalOps(journal)
        first = await ops.take(request("r1"))
        assert not isinstance(first, JobState) and first.recording_id == "r1"
        assert await ops.take(request("r1")) is JobState.RUNNING
        assert await journal.claim() is None  # a worker cannot have it either
        await journal.fail(first.id, 2, "boom")
        again = await ops.take(request("r1"))
        assert not isinstance(again, JobState) and again.attempts == 0
        await journal.complete(again.id, 1, {"recordingId": "r1"}, None)
        assert await ops.take(request("r1")) is JobState.COMPLETED
        await journal.close()

    asyncio.run(body())


async def test_fetch_a_genesys_recording_names_its_conversation(tmp_path: Path) -> None:
    from cxstream.sim.platform_servers import GenesysSim

    async with GenesysSim() as gsim:
        gsim.add_conversation({"id": "conv-cli", "recording": [{"id": "r-cli"}]})
        view = SimpleNamespace(
            base_url="http://127.0.0.1:9/x", token_url="http://127.0.0.1:9/t", archive_url=""
        )
        genesys = {
            "api_url": gsim.api_url,
            "login_url": gsim.login_url,
            "client_id": gsim.client_id,
            "client_secret": gsim.client_secret,
        }
        cfg = str(
            write_config(
                tmp_path, view, source={"kind": "genesys"}, genesys=genesys, archive={"url": ""}
            )
        )
        journal = SqliteJournal(tmp_path / "state" / "journal.sqlite3")
        await journal.open()
        await journal.close()
        code, _, err = await _cli("fetch", "--config", cfg, "r-cli")
        assert code == 2 and err.count("\n") == 1 and "--contact" in err
        code, out, err = await _cli(
            "fetch", "--config", cfg, "r-cli", "--contact", "conv-cli", "--json"
        )
        assert code == 0, err
        doc = orjson.loads(out)
        assert doc["state"] == "completed"
        assert Path(doc["path"]).read_bytes() == gsim.body("r-cli", "OGG_OPUS")


async def test_fetch_that_cannot_open_its_audit_file_takes_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    cfg = str(write_config(tmp_path, FAKE_SIM, audit={"path": str(blocker / "audit.ndjson")}))
    journal = SqliteJournal(tmp_path / "state" / "journal.sqlite3")
    await journal.open()
    await journal.close()
    code, out, err = await _cli("fetch", "--config", cfg, "rec-x")
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    ops = SqliteJournalOps(journal := SqliteJournal(tmp_path / "state" / "journal.sqlite3"))
    await journal.open()
    try:
        assert await ops.job("rec-x") is None  # never taken, so never left "running"
    finally:
        await journal.close()
