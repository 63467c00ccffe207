"""The fetch core in process against every fault the simulator makes.

Each fault must end the way the README promises: a stall or a cut resumes
with ``Range`` (nothing fetched twice), a server ignoring ``Range`` restarts
the batch, bytes that do not verify refetch that batch only, bytes that never
verify fail the job into quarantine, throttling is paid in time, and what no
retry can fix fails at once with nothing left under ``storage.dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from cxstream.sim.server import SimServer
from tests.inproc import Rig, rig
from tests.test_fetch_complete import assert_archived


def one_recording(sim: SimServer, codec: str, *faults: dict[str, Any], segments: int = 4) -> str:
    sim.add_recording(
        {"id": "rec-f", "segments": segments, "codecs": [codec], "faults": list(faults)}
    )
    return "rec-f"


def assert_failed(r: Rig, rid: str, error: str, attempts: int) -> dict[str, Any]:
    (line,) = r.trail.find("recording.failed", recording_id=rid)
    assert line["error"].startswith(error), line
    assert line["attempts"] == attempts
    row = r.row(rid)
    assert (row["state"], row["attempts"], row["last_error"]) == ("failed", attempts, line["error"])
    assert not r.trail.find("recording.completed")
    assert r.files() == [], "a failed job leaves nothing under storage.dir"
    return line


# -- interrupted responses resume where they stopped -----------------------------------


async def test_a_stall_resumes_with_range_and_fetches_nothing_twice(
    tmp_path: Path, sim: SimServer
) -> None:
    rid = one_recording(sim, "opus", {"kind": "stall", "after_bytes": 30000, "on": [1]})
    async with rig(tmp_path, sim) as r:
        await r.run(rid)
        assert_archived(r, rid, "opus")
        (stalled,) = r.trail.find("stream.stalled")
        (resumed,) = r.trail.find("stream.resumed")
    assert (stalled["offsets"], stalled["offset"], stalled["idle_s"]) == ("0,15,30", 30000, 0.5)
    assert (resumed["offset"], resumed["status"]) == (30000, 206)
    served = sim.served(rid)
    assert [(q.offsets, q.range, q.status) for q in served.requests] == [
        ([0, 15, 30], None, 200),
        ([0, 15, 30], "bytes=30000-", 206),
        ([45], None, 200),
    ]
    assert served.bytes_served == len(sim.body(rid, "opus"))
    assert r.metrics.registry.get_sample_value("cxstream_stream_stalls_total") == 1


@pytest.mark.parametrize(
    ("codec", "after"),
    # Twice inside the first batch: once mid-page, once mid-sample.
    [("opus", 20000), ("pcm", 100001)],
    ids=["opus", "pcm-mid-sample"],
)
async def test_a_connection_cut_mid_chunk_resumes_after_the_last_good_byte(
    tmp_path: Path, sim: SimServer, codec: str, after: int
) -> None:
    rid = one_recording(sim, codec, {"kind": "truncate", "after_bytes": after, "on": [1, 2]})
    async with rig(tmp_path, sim) as r:
        await r.run(rid)
        assert_archived(r, rid, codec)
        retries = r.trail.find("stream.retry")
    assert [x["error"] for x in retries] == ["connection_lost: ClientPayloadError"] * 2
    requests = sim.served(rid).requests
    # Each resume starts where the bytes on disk end, the cut one included.
    assert [q.range for q in requests[:3]] == [None, f"bytes={after}-", f"bytes={2 * after}-"]
    assert sim.served(rid).bytes_served == len(sim.body(rid, codec))


async def test_a_server_ignoring_range_restarts_the_batch_instead_of_appending(
    tmp_path: Path, sim: SimServer
) -> None:
    rid = one_recording(
        sim,
        "opus",
        {"kind": "stall", "after_bytes": 20000, "on": [1]},
        {"kind": "ignore_range", "on": [2]},
        segments=3,
    )
    async with rig(tmp_path, sim) as r:
        await r.run(rid)
        assert_archived(r, rid, "opus")
        (resumed,) = r.trail.find("stream.resumed")
    assert (resumed["offset"], resumed["status"], resumed["range_ignored"]) == (0, 200, True)
    assert [(q.range, q.status) for q in sim.served(rid).requests] == [
        (None, 200),
        ("bytes=20000-", 200),
    ]


async def test_a_stall_after_the_last_byte_finishes_without_refetching(
    tmp_path: Path, sim: SimServer
) -> None:
    # Every byte of the first batch arrives, then the end-of-body marker never
    # does: the resume's Range is past the end (416), and that is not a failure.
    sim.add_recording({"id": "rec-end", "segments": 4, "codecs": ["opus"]})
    first_batch = len(sim.body("rec-end", "opus", [0, 15, 30]))
    rid = one_recording(sim, "opus", {"kind": "stall", "after_bytes": first_batch, "on": [1]})
    async with rig(tmp_path, sim) as r:
        await r.run(rid)
        assert_archived(r, rid, "opus")
    assert [q.status for q in sim.served(rid).requests] == [200, 416, 200]
    assert sim.served(rid).bytes_served == len(sim.body(rid, "opus"))


# -- bytes that do not verify ------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "fault", "error"),
    [
        ("pcm", {"kind": "bad_digest", "on": [2]}, "repr_digest_mismatch"),
        ("pcm", {"kind": "corrupt", "at_byte": 5000, "on": [2]}, "repr_digest_mismatch"),
        ("opus", {"kind": "rot", "at_byte": 9000, "on": [2]}, "container_invalid: CRC mismatch"),
    ],
    ids=["bad-digest", "corrupt", "rot-once"],
)
async def test_a_batch_that_does_not_verify_is_refetched_alone(
    tmp_path: Path, sim: SimServer, codec: str, fault: dict[str, Any], error: str
) -> None:
    rid = one_recording(sim, codec, fault, segments=6)
    async with rig(tmp_path, sim) as r:
        await r.run(rid)
        sidecar = assert_archived(r, rid, codec)
        (retry,) = r.trail.find("stream.retry")
    assert retry["error"].startswith(error)
    assert sidecar["attempts"] == 2
    # The second batch, and only it, is fetched again from its first byte.
    assert [(q.offsets, q.range) for q in sim.served(rid).requests] == [
        ([0, 15, 30], None),
        ([45, 60, 75], None),
        ([45, 60, 75], None),
    ]
    assert not r.quarantined()


@pytest.mark.parametrize(
    ("codec", "fault", "error"),
    [
        ("pcm", {"kind": "corrupt", "at_byte": 9000}, "repr_digest_mismatch"),
        ("opus", {"kind": "rot", "at_byte": 9000}, "container_invalid: CRC mismatch"),
        ("opus", {"kind": "missing_eos"}, "container_invalid: link"),
        # Each response matches its (lying) digest; only the whole's sha256 can tell.
        ("pcm", {"kind": "rot", "at_byte": 9000}, "sha256_mismatch"),
    ],
    ids=["digest-mismatch", "crc-with-lying-digest", "missing-eos", "pcm-lying-digest"],
)
async def test_bytes_that_never_verify_fail_into_quarantine(
    tmp_path: Path, sim: SimServer, codec: str, fault: dict[str, Any], error: str
) -> None:
    rid = one_recording(sim, codec, fault)
    async with rig(tmp_path, sim) as r:  # max_attempts = 4
        await r.run(rid)
        failed = assert_failed(r, rid, error, attempts=4)
        retries = r.trail.find("stream.retry")
        (line,) = r.trail.find("recording.quarantined")
    assert len(retries) == 3 and all(x["error"].startswith(error) for x in retries)
    audio, reason = r.quarantined()
    assert audio.name.startswith(f"{rid}.") and reason.name == audio.name + ".reason.json"
    why = orjson.loads(reason.read_bytes())
    assert why["reason"] == failed["error"] and why["bytes"] == audio.stat().st_size > 0
    assert (line["path"], line["reason"]) == (str(audio), failed["error"])
    if error != "sha256_mismatch":
        # Only the failing batch is ever refetched, never the recording's other one.
        assert {tuple(q.offsets) for q in sim.served(rid).requests} == {(0, 15, 30)}  # type: ignore[arg-type]


# -- answers that are not audio -----------------------------------------------------------


async def test_a_json_error_with_status_200_never_touches_the_file(
    tmp_path: Path, sim: SimServer
) -> None:
    rid = one_recording(sim, "opus", {"kind": "json200", "on": [1, 2]})
    async with rig(tmp_path, sim) as r:
        await r.run(rid)
        assert_archived(r, rid, "opus")
        retries = r.trail.find("stream.retry")
    assert [(x["status"], x["error"]) for x in retries] == [(200, "storage_timeout")] * 2


async def test_a_json_error_every_time_fails_with_nothing_quarantined(
    tmp_path: Path, sim: SimServer
) -> None:
    rid = one_recording(sim, "opus", {"kind": "json200"})
    async with rig(tmp_path, sim, streams={"max_attempts": 3}) as r:
        await r.run(rid)
        assert_failed(r, rid, "storage_timeout", attempts=3)
    assert not r.quarantined() and not r.trail.find("recording.quarantined")


@pytest.mark.parametrize(("budget", "outcome"), [(600.0, "completed"), (0.0, "failed")])
async def test_throttling_is_paid_in_time_not_attempts(
    tmp_path: Path, sim: SimServer, budget: float, outcome: str
) -> None:
    rid = one_recording(
        sim, "opus", {"kind": "status", "status": 429, "retry_after": 0, "times": 5}, segments=2
    )
    streams = {"max_attempts": 3, "throttle_budget_s": budget}
    async with rig(tmp_path, sim, streams=streams) as r:
        await r.run(rid)
        retries = r.trail.find("stream.retry")
        if outcome == "completed":
            assert assert_archived(r, rid, "opus")["attempts"] == 1
            assert len(retries) == 5 and all(x.get("throttled") for x in retries)
            # Retry-After: 0 still backs off: the waits are waits, they do not spin.
            assert all(x["delay_s"] > 0 for x in retries)
        else:
            assert_failed(r, rid, "rate_limited", attempts=3)
            assert not any(x.get("throttled") for x in retries)


async def test_retry_after_is_honoured_for_metadata_and_stream(
    tmp_path: Path, sim: SimServer
) -> None:
    rid = one_recording(
        sim,
        "opus",
        {"kind": "metadata_status", "status": 429, "retry_after": 1, "times": 1},
        {"kind": "status", "status": 503, "retry_after": 1, "times": 1},
        segments=2,
    )
    async with rig(tmp_path, sim) as r:
        await r.run(rid)
        assert_archived(r, rid, "opus")
        retries = r.trail.find("stream.retry")
    assert [(x["status"], x["delay_s"], x.get("throttled")) for x in retries] == [
        (429, 1.0, True),
        (503, 1.0, True),
    ]
    assert sim.served(rid).metadata_requests == 2


# -- what no retry can fix ------------------------------------------------------------------


async def test_a_recording_cxone_does_not_have_fails_at_once(
    tmp_path: Path, sim: SimServer
) -> None:
    async with rig(tmp_path, sim) as r:
        await r.run("rec-missing")
        line = assert_failed(r, "rec-missing", "recording_not_found", attempts=1)
    assert line["status"] == 404
    assert not r.trail.find("stream.retry") and not r.trail.find("recording.started")


async def test_an_offset_the_recording_lacks_fails_without_a_stream_request(
    tmp_path: Path, sim: SimServer
) -> None:
    sim.add_recording({"id": "rec-p", "segments": 2, "codecs": ["opus"]})
    async with rig(tmp_path, sim) as r:
        await r.run("rec-p", offsets=[0, 7])
        assert_failed(r, "rec-p", "plan_impossible", attempts=1)
    assert sim.served("rec-p").stream_requests == 0
