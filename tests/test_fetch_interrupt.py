"""The fetch core in process, stopped mid-stream: checkpoints, hand-backs and resumes.

A cancelled job is what a SIGTERM does to a worker: the job saves its
checkpoint under shield and goes back to the queue; the next runner (a new
app over the same journal and storage, as after a restart) resumes from it
with ``Range``. A journal that cannot record is an outage of ours: the job is
handed back with ``JobInterrupted``, never failed. The signals themselves are
tests/test_resilience.py's.
"""

from __future__ import annotations

import asyncio
import hashlib
import wave
from pathlib import Path
from typing import Any

import orjson
import pytest

from cxstream.fetcher.job import JobInterrupted
from cxstream.keys import POOL
from cxstream.sim.server import SimServer
from tests.inproc import Rig, rig, webhook_request

# Checkpoints as often as the config allows, and a trickle so that a stop lands mid-stream.
SLOW = {"streams": {"checkpoint_bytes": 64 * 1024}}


def long_pcm(sim: SimServer, rid: str, segments: int = 8, rate: int = 3_000_000) -> int:
    sim.add_recording(
        {
            "id": rid,
            "segments": segments,
            "codecs": ["pcm"],
            "faults": [{"kind": "trickle", "bytes_per_second": rate}],
        }
    )
    return sim.expected(rid, "pcm")[0]


async def stop_midway(r: Rig, rid: str, fraction: float) -> dict[str, Any]:
    """Run ``rid`` until the simulator has served ``fraction`` of it, then cancel the job
    as a stopping worker pool does; the journal row it leaves."""
    size = r.sim.expected(rid, "pcm")[0]
    job = await r.submit(rid)
    task = asyncio.create_task(r.runner.run(job))
    await r.sim.wait_for(lambda: r.sim.served(rid).bytes_served >= fraction * size, 20)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return r.row(rid)


def assert_wav_exact(path: Path, sim: SimServer, rid: str) -> None:
    with wave.open(str(path), "rb") as w:
        frames = w.readframes(w.getnframes())
    assert (len(frames), hashlib.sha256(frames).hexdigest()) == sim.expected(rid, "pcm")


async def test_a_cancelled_job_saves_its_checkpoint_and_the_next_runner_resumes_it(
    tmp_path: Path, sim: SimServer
) -> None:
    size = long_pcm(sim, "rec-c")
    async with rig(tmp_path, sim, **SLOW) as first:
        row = await stop_midway(first, "rec-c", 0.4)
        part = first.path("rec-c", "pcm").with_name(".rec-c.wav.part")
        assert not first.trail.find("recording.failed")
        assert not first.trail.find("recording.completed")
    # Handed back: queued again, with a checkpoint no further than the durable bytes.
    assert row["state"] == "queued"
    checkpoint = orjson.loads(row["checkpoint"])
    assert checkpoint["codec"] == "pcm"
    assert 0 < checkpoint["offset"] <= part.stat().st_size

    async with rig(tmp_path, sim, **SLOW) as second:
        job = await second.claim()
        assert job.checkpoint is not None and job.checkpoint.offset == checkpoint["offset"]
        await second.runner.run(job)
        (started,) = second.trail.find("recording.started")
        (done,) = second.trail.find("recording.completed")
    assert started["resumed_bytes"] > 0
    assert_wav_exact(Path(done["path"]), sim, "rec-c")
    assert not part.exists()
    served = sim.served("rec-c")
    # The restart asked for the rest of its batch, not the recording again...
    assert any(q.range for q in served.requests[1:])
    # ...so the whole recording cost well under one and a half downloads.
    assert served.bytes_served < 1.5 * size, (served.bytes_served, size)


async def test_a_journal_that_cannot_record_hands_the_job_back_and_fails_nothing(
    tmp_path: Path, sim: SimServer
) -> None:
    long_pcm(sim, "rec-j")
    async with rig(tmp_path, sim, **SLOW) as r:
        job = await r.submit("rec-j")
        task = asyncio.create_task(r.runner.run(job))
        await sim.wait_for(lambda: sim.served("rec-j").bytes_served > 256 * 1024, 20)
        await r.journal.close()  # the next checkpoint cannot be recorded
        with pytest.raises(JobInterrupted):
            await task
        part = r.path("rec-j", "pcm").with_name(".rec-j.wav.part")
        # Not the recording's fault: nothing failed, nothing quarantined, the bytes kept.
        assert not r.trail.find("recording.failed")
        assert not r.trail.find("recording.completed")
        assert not r.quarantined()
        assert part.is_file()
        # The job stays "running" with its last checkpoint, which never points past
        # durable bytes: the next start re-queues it and resumes from there.
        row = r.row("rec-j")
        assert row["state"] == "running"
        checkpoint = orjson.loads(row["checkpoint"])
        assert 0 < checkpoint["offset"] <= part.stat().st_size


async def test_the_worker_pool_reports_an_interrupted_job_and_keeps_it(
    tmp_path: Path, sim: SimServer
) -> None:
    """The same outage seen from the pool the daemon runs: one ``recording.interrupted``
    line and metric, and the job is neither failed nor dropped."""
    long_pcm(sim, "rec-p")
    async with rig(tmp_path, sim, **SLOW) as r:
        pool = r.app[POOL]
        await r.journal.enqueue(webhook_request("rec-p"))
        pool.start()
        try:
            pool.wake()
            await sim.wait_for(lambda: sim.served("rec-p").bytes_served > 256 * 1024, 20)
            await r.journal.close()
            line = await r.trail.wait("recording.interrupted")
        finally:
            await pool.stop(5.0)
        assert (line["recording_id"], line["reason"]) == ("rec-p", "journal")
        sample = r.metrics.registry.get_sample_value
        assert sample("cxstream_jobs_interrupted_total", {"reason": "journal"}) == 1
        assert not r.trail.find("recording.failed")
        assert r.row("rec-p")["state"] == "running"  # re-queued by the next start


async def test_a_dotted_recording_id_that_vanishes_after_a_stop_leaves_no_part_file(
    tmp_path: Path, sim: SimServer
) -> None:
    rid = "rec.v2.final"
    long_pcm(sim, rid, segments=6)
    async with rig(tmp_path, sim, **SLOW) as first:
        await stop_midway(first, rid, 0.3)
        assert [p.name for p in first.files()] == [f".{rid}.wav.part"]
    del sim.state.recordings[rid]  # CXone no longer has it: 404 before the part reopens
    async with rig(tmp_path, sim, **SLOW) as second:
        await second.runner.run(await second.claim())
        (failed,) = second.trail.find("recording.failed", recording_id=rid)
        assert failed["error"] == "recording_not_found"
        assert second.files() == []
