"""Crashes and stops of the real process: kill -9 mid-stream costs seconds, SIGTERM
exits 0 and loses nothing, SIGHUP reopens the audit file.

Only what needs a process and its signals is here; a job cancelled or handed
back in process (what a worker sees of a stop) is tests/test_fetch_interrupt.py's,
and bytes that never verify are tests/test_fetch_faults.py's.
"""

from __future__ import annotations

import asyncio
import hashlib
import signal
import sys
import time
import wave
from pathlib import Path

import aiohttp
import orjson

from cxstream.sim.server import SimServer
from tests.harness import Daemon, completed, raw_post, sign, write_config
from tests.schema import audit_validator

# Small checkpoints so that a kill loses little; a trickle so that a kill lands mid-stream.
SLOW = {"checkpoint_bytes": 256 * 1024, "concurrency": 2}


def _long_pcm(sim: SimServer, rid: str, segments: int, rate: int) -> int:
    sim.add_recording(
        {
            "id": rid,
            "segments": segments,
            "codecs": ["pcm"],
            "faults": [{"kind": "trickle", "bytes_per_second": rate}],
        }
    )
    return sim.expected(rid, "pcm")[0]


def _wav_matches(path: Path, sim: SimServer, rid: str) -> None:
    with wave.open(str(path), "rb") as w:
        frames = w.readframes(w.getnframes())
    size, sha = sim.expected(rid, "pcm")
    assert len(frames) == size
    assert hashlib.sha256(frames).hexdigest() == sha


async def test_two_kill9s_mid_stream_lose_nothing_and_refetch_little(
    sim: SimServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    size = _long_pcm(sim, "rec-k9", segments=40, rate=4_000_000)  # 9.6 MB, ~2.4 s a run
    daemon = Daemon(write_config(tmp_path, sim, streams=SLOW))
    await daemon.start()
    assert (await daemon.post(http, completed("rec-k9")))[0] == 202
    stats = sim.served("rec-k9")
    for fraction in (0.3, 0.65):
        await sim.wait_for(lambda f=fraction: stats.bytes_served >= f * size, timeout_s=30)
        await daemon.kill()
        await daemon.start()
    done = await daemon.wait_event("recording.completed", recording_id="rec-k9", timeout_s=60)
    assert await daemon.stop() == 0
    _wav_matches(Path(done["path"]), sim, "rec-k9")
    # Each restart resumed from a checkpoint rather than from zero...
    assert daemon.find("recording.started", recording_id="rec-k9")[0]["resumed_bytes"] > 0
    ranged = [r for r in stats.requests if r.range]
    assert len(ranged) >= 2
    # ...so the whole recording cost well under one and a half downloads.
    assert stats.bytes_served < 1.5 * size, (stats.bytes_served, size)
    assert not list((tmp_path / "recordings").rglob("*.part"))


async def test_sigterm_with_live_streams_exits_0_and_restart_finishes(
    sim: SimServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    sizes = {rid: _long_pcm(sim, rid, segments=24, rate=1_500_000) for rid in ("rec-t1", "rec-t2")}
    daemon = Daemon(write_config(tmp_path, sim, streams=SLOW))
    await daemon.start()
    for rid in sizes:
        assert (await daemon.post(http, completed(rid)))[0] == 202
    for rid, size in sizes.items():
        stats = sim.served(rid)
        await sim.wait_for(lambda s=stats, n=size: s.bytes_served >= 0.2 * n, timeout_s=30)
    sent = time.monotonic()
    await daemon.signal(signal.SIGTERM)
    code = await daemon.stop(timeout_s=10)
    assert code == 0
    assert time.monotonic() - sent < 10
    assert daemon.find("daemon.stopped")
    assert not daemon.find("recording.completed")

    await daemon.start()
    for rid in sizes:
        done = await daemon.wait_event("recording.completed", recording_id=rid, timeout_s=60)
        _wav_matches(Path(done["path"]), sim, rid)
        started = daemon.find("recording.started", recording_id=rid)[0]
        assert started["resumed_bytes"] > 0
    assert await daemon.stop() == 0


async def test_sigterm_lets_in_flight_webhooks_finish_and_answers_new_ones_503(
    sim: SimServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    sim.add_recording({"id": "rec-in", "segments": 1, "codecs": ["opus"]})
    # The default short grace: the webhook in flight holds the drain open by itself.
    daemon = Daemon(write_config(tmp_path, sim))
    await daemon.start()
    body = completed("rec-in")
    headers = {
        **sign(body),
        "Content-Length": str(len(body)),
        "Connection": "close",
        "Expect": "100-continue",
    }
    reader, writer = await raw_post(daemon.webhook_url, headers)
    # aiohttp answers "100 Continue" on its way into the handler, with no await
    # between that write and the handler counting itself in flight: once it is
    # read here, the SIGTERM below finds one webhook in flight.
    async with asyncio.timeout(10):
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    await daemon.signal(signal.SIGTERM)
    stopping = await daemon.wait_event("daemon.stopping")
    assert stopping["inflight_webhooks"] == 1
    # A new webhook during the drain: a clear 503 + Retry-After, never a reset.
    late = completed("rec-late")
    async with http.post(daemon.webhook_url, data=late, headers=sign(late)) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"].isdigit()
    # The one already in flight gets its real answer: the job is committed.
    writer.write(body)
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]
    assert await daemon.stop() == 0
    await daemon.start()
    done = await daemon.wait_event("recording.completed", recording_id="rec-in")
    assert Path(done["path"]).is_file()
    assert await daemon.stop() == 0


async def test_sighup_reopens_the_audit_file_for_logrotate(
    sim: SimServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    sim.add_recording({"id": "rec-rot", "segments": 1, "codecs": ["opus"]})
    audit = tmp_path / "audit.ndjson"
    config = write_config(tmp_path, sim, audit={"path": str(audit)})
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cxstream",
        "run",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    Daemon.started.append(proc)

    def lines(path: Path) -> list[dict]:
        return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []

    async def until(predicate) -> None:
        async with asyncio.timeout(20):
            while not predicate():  # noqa: ASYNC110 - a file offers no event to await
                await asyncio.sleep(0.05)

    await until(lambda: any(e["event"] == "daemon.started" for e in lines(audit)))
    started = next(e for e in lines(audit) if e["event"] == "daemon.started")
    rotated = audit.with_name("audit.ndjson.1")
    audit.rename(rotated)  # logrotate: rename, then signal
    proc.send_signal(signal.SIGHUP)
    await until(audit.exists)
    body = completed("rec-rot")
    url = f"http://{started['webhook']}/webhooks/cxone"
    async with http.post(url, data=body, headers=sign(body)) as resp:
        assert resp.status == 202
    await until(lambda: any(e["event"] == "recording.completed" for e in lines(audit)))
    proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(15):
        assert await proc.wait() == 0
    old, new = lines(rotated), lines(audit)
    assert [e["event"] for e in old] == ["journal.opened", "daemon.started"]
    assert new[-1]["event"] == "daemon.stopped"
    validator = audit_validator()
    for event in old + new:
        assert not list(validator.iter_errors(event)), event
    assert await proc.stdout.read() == b""  # the trail went to the file, nothing to stdout
