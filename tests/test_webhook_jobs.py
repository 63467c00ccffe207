"""Contract §2's 202 and 200-duplicate rows with the real workers behind them.

In process (tests/ingress.py with a simulator): the daemon's own app, its
worker pool started against the in-process CXone simulator, a real journal.
A 202 must become a verified file; a duplicate must queue nothing, whatever
state the first job is in (queued, running, done); a failed recording is
accepted again. The journal is read beside the daemon to know a job's state
at the moment of each answer, so no test waits on time to prove a negative.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import orjson

from cxstream.sim.server import SimServer
from cxstream.sink.record import final_path, sidecar_path
from tests.harness import completed, sign_raw
from tests.ingress import Ingress, ingress


def states(ing: Ingress) -> dict[str, str]:
    return {row["recording_id"]: row["state"] for row in ing.jobs()}


async def post(ing: Ingress, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    code, doc, _ = await ing.post(body, sign_raw(body) if headers is None else headers)
    return code, doc


async def test_an_accepted_job_runs_to_a_verified_file_filed_under_the_event_date(
    tmp_path: Path, sim: SimServer
) -> None:
    sim.add_recording({"id": "rec-ok", "segments": 2, "codecs": ["opus"]})
    async with ingress(tmp_path, cxone=sim) as ing:
        assert await post(ing, completed("rec-ok", contactId="c-77")) == (
            202,
            {"status": "accepted"},
        )
        (accepted,) = ing.lines("webhook.accepted")
        assert accepted["contact_id"] == "c-77"
        (done,) = await ing.wait_lines("recording.completed")
    path = Path(done["path"])
    assert path == final_path(tmp_path / "recordings", "2026/11/24", "rec-ok", "opus")
    assert path.stat().st_size == done["bytes"] > 0
    assert hashlib.sha256(path.read_bytes()).hexdigest() == done["sha256"]
    sidecar = orjson.loads(sidecar_path(path, "rec-ok").read_bytes())
    assert (sidecar["recordingId"], sidecar["contactId"]) == ("rec-ok", "c-77")


async def test_codec_and_offsets_reach_the_job(tmp_path: Path, sim: SimServer) -> None:
    sim.add_recording({"id": "rec-pcm", "segments": 3, "codecs": ["opus", "pcm"]})
    async with ingress(tmp_path, cxone=sim) as ing:
        body = completed("rec-pcm", codec="pcm", offsets=[15, 30])
        assert await post(ing, body) == (202, {"status": "accepted"})
        (accepted,) = ing.lines("webhook.accepted")
        assert (accepted["codec"], accepted["offsets"]) == ("pcm", [15, 30])
        (done,) = await ing.wait_lines("recording.completed")
    path = Path(done["path"])
    assert done["codec"] == "pcm" and path.name == "rec-pcm.wav"
    sidecar = orjson.loads(sidecar_path(path, "rec-pcm").read_bytes())
    assert [s["offset"] for s in sidecar["segments"]] == [15, 30]


async def test_an_event_timestamp_out_of_range_files_under_the_receipt_date(
    tmp_path: Path, sim: SimServer
) -> None:
    # Year 1 at +14:00 is out of range in UTC: the folder falls back to the
    # receipt date instead of the handler failing (it used to answer 503).
    sim.add_recording({"id": "rec-ts", "segments": 1, "codecs": ["opus"]})
    body = completed("rec-ts").replace(b"2026-11-24T10:00:00Z", b"0001-01-01T00:00:00+14:00")
    assert b"0001-01-01" in body
    async with ingress(tmp_path, cxone=sim) as ing:
        assert await post(ing, body) == (202, {"status": "accepted"})
        (done,) = await ing.wait_lines("recording.completed")
    day = str(Path(done["path"]).parent.relative_to(tmp_path / "recordings"))
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}", day) and day != "0001/01/01", day


async def test_a_done_recording_and_a_replayed_webhook_id_are_duplicates(
    tmp_path: Path, sim: SimServer
) -> None:
    sim.add_recording({"id": "rec-ok", "segments": 1, "codecs": ["opus"]})
    async with ingress(tmp_path, cxone=sim) as ing:
        first = completed("rec-ok")
        headers = sign_raw(first)
        assert await post(ing, first, headers) == (202, {"status": "accepted"})
        await ing.wait_lines("recording.completed")
        served = sim.served("rec-ok").stream_requests
        duplicate = (200, {"status": "duplicate"})
        # The same recording under a new webhook-id, now that it is done.
        assert await post(ing, completed("rec-ok", contactId="again")) == duplicate
        # A replay: the same webhook-id, byte for byte, twice.
        assert await post(ing, first, headers) == duplicate
        assert await post(ing, first, headers) == duplicate
        # The same webhook-id for another (unknown) recording: the id decides.
        other = completed("rec-never-fetched")
        assert await post(ing, other, sign_raw(other, webhook_id=headers["webhook-id"])) == (
            duplicate
        )
        # The journal answered before each 200: nothing new was queued, so no
        # worker can have anything to fetch.
        assert states(ing) == {"rec-ok": "completed"}
        dups = ing.lines("webhook.duplicate")
        assert [d["recording_id"] for d in dups] == ["rec-ok"] * 3 + ["rec-never-fetched"]
        assert len(ing.lines("webhook.accepted")) == 1
        assert sim.served("rec-ok").stream_requests == served


async def test_duplicates_while_running_and_while_queued_queue_nothing(
    tmp_path: Path, sim: SimServer
) -> None:
    # One worker, held by a stalled stream (two stalls of idle_timeout_s), so a
    # second job provably waits in the queue.
    sim.add_recording(
        {
            "id": "rec-slow",
            "segments": 2,
            "codecs": ["opus"],
            "faults": [{"kind": "stall", "after_bytes": 1000, "times": 2}],
        }
    )
    sim.add_recording({"id": "rec-queued", "segments": 1, "codecs": ["opus", "pcm"]})
    streams = {"concurrency": 1, "idle_timeout_s": 0.5}
    async with ingress(tmp_path, cxone=sim, streams=streams) as ing:
        assert (await post(ing, completed("rec-slow")))[0] == 202
        await sim.wait_for(lambda: sim.served("rec-slow").active_streams == 1)
        duplicate = (200, {"status": "duplicate"})
        assert await post(ing, completed("rec-slow")) == duplicate
        assert (await post(ing, completed("rec-queued")))[0] == 202
        assert await post(ing, completed("rec-queued", codec="pcm")) == duplicate
        # What the journal held when those answers were given.
        assert states(ing) == {"rec-slow": "running", "rec-queued": "queued"}, "too slow"
        await ing.trail.wait_for(lambda: len(ing.lines("recording.completed")) == 2, 20)
    # Each ran once, one after the other: the duplicates queued nothing.
    for event in ("webhook.accepted", "recording.started", "recording.completed"):
        assert [x["recording_id"] for x in ing.lines(event)] == ["rec-slow", "rec-queued"], event
    # The queued one ran with its first webhook's (absent) codec, not the duplicate's.
    done = {x["recording_id"]: x for x in ing.lines("recording.completed")}
    assert done["rec-queued"]["codec"] == "opus"


async def test_a_failed_recording_is_accepted_again(tmp_path: Path, sim: SimServer) -> None:
    async with ingress(tmp_path, cxone=sim) as ing:
        body = completed("rec-late")
        headers = sign_raw(body)
        assert (await post(ing, body, headers))[0] == 202
        (failed,) = await ing.wait_lines("recording.failed")
        assert failed["error"] == "recording_not_found"
        # The same webhook-id again is still a replay...
        assert await post(ing, body, headers) == (200, {"status": "duplicate"})
        # ...but a new notification for a dead-lettered recording tries again.
        sim.add_recording({"id": "rec-late", "segments": 1, "codecs": ["opus"]})
        assert await post(ing, completed("rec-late")) == (202, {"status": "accepted"})
        (done,) = await ing.wait_lines("recording.completed")
    assert Path(done["path"]).is_file()
    assert len(ing.lines("webhook.accepted")) == 2
