"""The whole path once, for real: signed webhook → journal → stream → verified file → callback."""

from __future__ import annotations

import hashlib
import wave
from pathlib import Path

import aiohttp
import orjson
import pytest

from cxstream.formats import ogg
from cxstream.sim.server import SimServer
from tests.conftest import StartDaemon
from tests.harness import ARCHIVE_SECRET, CLIENT_SECRET, WEBHOOK_SECRET, Daemon, completed

DAY = Path("2026/11/24")


def finished(daemon: Daemon, ids: list[str]) -> bool:
    done = {
        e["recording_id"]
        for e in daemon.events
        if e.get("event") in ("recording.completed", "recording.failed")
    }
    return set(ids) <= done


def assert_exact(
    tmp_path: Path, sim: SimServer, rid: str, codec: str, offsets: list[int] | None = None
) -> Path:
    ext = "opus" if codec == "opus" else "wav"
    path = tmp_path / "recordings" / DAY / f"{rid}.{ext}"
    data = path.read_bytes()
    source = sim.body(rid, codec, offsets)
    if codec == "opus":
        assert data == source
        pages = ogg.iter_pages(data)
        assert all(ogg.page_crc(raw) == page.crc for page, raw in pages)
    else:
        with wave.open(str(path), "rb") as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
            assert w.getnframes() * 2 == len(source)
            assert w.readframes(w.getnframes()) == source
    if offsets is None:
        size, sha = sim.expected(rid, codec)
        assert hashlib.sha256(source).hexdigest() == sha and len(source) == size
    sidecar = orjson.loads(path.with_suffix(".json").read_bytes())
    assert sidecar["recordingId"] == rid
    assert sidecar["sha256"] == hashlib.sha256(data).hexdigest()
    assert sidecar["bytes"] == len(data)
    assert sidecar["sourceSha256"] == hashlib.sha256(source).hexdigest()
    assert sidecar["codec"] == codec
    return path


async def test_recordings_arrive_byte_exact_and_are_announced(
    sim: SimServer, start_daemon: StartDaemon, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sim.add_recording({"id": "rec-opus", "segments": 7, "codecs": ["opus", "pcm"]})
    sim.add_recording({"id": "rec-pcm", "segments": 4, "codecs": ["pcm"]})
    sim.add_recording({"id": "rec-pref", "segments": 2, "codecs": ["opus", "pcm"]})
    sim.add_recording({"id": "rec-part", "segments": 6, "codecs": ["opus"]})
    sim.add_recording(
        {"id": "rec-413", "segments": 5, "codecs": ["opus"], "enforce_max_segments": 2}
    )
    daemon = await start_daemon()
    hooks = [
        completed("rec-opus", contactId="c-1"),
        completed("rec-pcm"),
        completed("rec-pref", codec="pcm"),
        completed("rec-part", offsets=[15, 45, 60]),
        completed("rec-413"),
        completed("rec-missing"),
    ]
    for body in hooks:
        status, answer = await daemon.post(http, body)
        assert (status, answer) == (202, {"status": "accepted"})
    ids = ["rec-opus", "rec-pcm", "rec-pref", "rec-part", "rec-413", "rec-missing"]
    await daemon.wait_for(lambda: finished(daemon, ids), 30)

    assert_exact(tmp_path, sim, "rec-opus", "opus")
    assert_exact(tmp_path, sim, "rec-pcm", "pcm")
    assert_exact(tmp_path, sim, "rec-pref", "pcm")
    assert_exact(tmp_path, sim, "rec-part", "opus", [15, 45, 60])
    assert_exact(tmp_path, sim, "rec-413", "opus")

    failed = daemon.find("recording.failed", recording_id="rec-missing")
    assert failed and failed[0]["error"] == "recording_not_found"
    assert not list((tmp_path / "recordings").rglob("rec-missing*"))
    assert not list((tmp_path / "recordings").rglob("*.part"))

    # Offsets always as 0,15,30; never more than the advertised three; never 400/416.
    for rid in ("rec-opus", "rec-pcm", "rec-pref", "rec-part"):
        for req in sim.stats.stats_for(rid).requests:
            assert req.status in (200, 206), (rid, req)
            assert isinstance(req.offsets, list) and len(req.offsets) <= 3
    statuses_413 = [r.status for r in sim.stats.stats_for("rec-413").requests]
    assert statuses_413.count(413) == 1 and statuses_413[-1] == 200

    completed_lines = {e["recording_id"]: e for e in daemon.find("recording.completed")}
    for rid, line in completed_lines.items():
        assert {"bytes", "sha256", "ttfb_ms", "duration_ms", "attempts", "path"} <= line.keys()
        assert Path(line["path"]).is_file(), rid

    # Every verified recording is announced, signed, once per webhook-id.
    await sim.wait_for(
        lambda: len({a.payload["data"]["recordingId"] for a in sim.announcements}) == 5, 10
    )
    for ann in sim.announcements:
        data = ann.payload["data"]
        assert ann.payload["type"] == "recording.archived"
        line = completed_lines[data["recordingId"]]
        assert data["sha256"] == line["sha256"] and data["bytes"] == line["bytes"]
        assert data["path"] == line["path"]
    # The sink answers 401 to a bad signature: every call here verified.
    assert all(ann.status == 204 for ann in sim.announcements)

    assert await daemon.stop() == 0
    secrets = [WEBHOOK_SECRET, CLIENT_SECRET, ARCHIVE_SECRET, *sim.stats.tokens]
    for raw in daemon.raw_lines:
        event = orjson.loads(raw)
        assert {"ts", "level", "event"} <= event.keys()
        for secret in secrets:
            assert secret.encode() not in raw


@pytest.mark.parametrize(
    ("fault", "codec"),
    [
        ({"kind": "stall", "after_bytes": 30000, "on": [1]}, "opus"),
        ({"kind": "truncate", "after_bytes": 40000, "on": [1]}, "opus"),
        ({"kind": "truncate", "after_bytes": 100001, "on": [1, 2]}, "pcm"),
        ({"kind": "json200", "on": [1, 2]}, "opus"),
        ({"kind": "status", "status": 503, "retry_after": 1, "times": 2}, "opus"),
        ({"kind": "status", "status": 429, "retry_after": 0, "times": 3}, "pcm"),
        ({"kind": "expire_token", "on": [2]}, "opus"),
        ({"kind": "corrupt", "at_byte": 5000, "on": [1]}, "opus"),
        ({"kind": "bad_digest", "on": [2]}, "pcm"),
        ({"kind": "trickle", "bytes_per_second": 200000, "on": [1]}, "pcm"),
    ],
    ids=lambda v: v["kind"] if isinstance(v, dict) else v,
)
async def test_each_fault_ends_in_a_byte_exact_recording(
    sim: SimServer,
    start_daemon: StartDaemon,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    fault: dict,
    codec: str,
) -> None:
    sim.add_recording({"id": "rec-f", "segments": 5, "codecs": [codec], "faults": [fault]})
    daemon = await start_daemon()
    assert (await daemon.post(http, completed("rec-f")))[0] == 202
    line = await daemon.wait_event("recording.completed", recording_id="rec-f")
    assert_exact(tmp_path, sim, "rec-f", codec)
    assert not daemon.find("recording.failed")
    requests = sim.stats.stats_for("rec-f").requests
    assert any(r.faults for r in requests), "the fault never fired"
    # A trickle is no failure, a token refresh is free, and a 429/503 that
    # says when to come back is a wait paid from the throttle budget.
    assert line["attempts"] > 1 or fault["kind"] in ("trickle", "expire_token", "status")
    assert not list((tmp_path / "recordings").rglob("*.part"))


async def test_ignored_range_restarts_the_batch_instead_of_appending(
    sim: SimServer, start_daemon: StartDaemon, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sim.add_recording(
        {
            "id": "rec-r",
            "segments": 3,
            "codecs": ["opus"],
            "faults": [
                {"kind": "stall", "after_bytes": 20000, "on": [1]},
                {"kind": "ignore_range", "on": [2]},
            ],
        }
    )
    daemon = await start_daemon()
    assert (await daemon.post(http, completed("rec-r")))[0] == 202
    await daemon.wait_event("recording.completed", recording_id="rec-r")
    assert_exact(tmp_path, sim, "rec-r", "opus")
    resumed = daemon.find("stream.resumed", recording_id="rec-r")
    assert resumed and resumed[0]["status"] == 200 and resumed[0]["offset"] == 0
    assert daemon.find("stream.stalled", recording_id="rec-r")


@pytest.mark.parametrize(
    ("spec", "hook", "error"),
    [
        (
            {"id": "rec-p", "segments": 2, "codecs": ["opus"]},
            {"offsets": [0, 7]},
            "plan_impossible",
        ),
        ({"id": "rec-p", "segments": 2, "codecs": ["opus"]}, {"codec": "pcm"}, None),
        (
            {"id": "rec-p", "segments": 2, "codecs": ["opus"], "faults": [{"kind": "json200"}]},
            {},
            "storage_timeout",
        ),
    ],
    ids=["offset-not-in-recording", "codec-preference-falls-back", "json200-every-time"],
)
async def test_impossible_requests_fail_cleanly(
    sim: SimServer,
    start_daemon: StartDaemon,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    spec: dict,
    hook: dict,
    error: str | None,
) -> None:
    sim.add_recording(spec)
    daemon = await start_daemon(streams={"max_attempts": 3})
    assert (await daemon.post(http, completed("rec-p", **hook)))[0] == 202
    await daemon.wait_for(lambda: finished(daemon, ["rec-p"]))
    if error is None:
        assert_exact(tmp_path, sim, "rec-p", "opus")
        return
    failed = daemon.find("recording.failed", recording_id="rec-p")
    assert failed and failed[0]["error"].startswith(error)
    assert not [p for p in (tmp_path / "recordings").rglob("*") if p.is_file()]
    assert all(r.status in (200, 206) for r in sim.stats.stats_for("rec-p").requests)


async def test_406_mid_job_moves_to_the_next_codec(
    sim: SimServer, start_daemon: StartDaemon, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sim.add_recording(
        {
            "id": "rec-406",
            "segments": 4,
            "codecs": ["opus", "pcm"],
            "faults": [{"kind": "codec_unavailable", "on": [2]}],
        }
    )
    daemon = await start_daemon()
    assert (await daemon.post(http, completed("rec-406")))[0] == 202
    done = await daemon.wait_event("recording.completed", recording_id="rec-406")
    assert done["codec"] == "pcm"
    assert_exact(tmp_path, sim, "rec-406", "pcm")
    assert not (tmp_path / "recordings" / DAY / "rec-406.opus").exists()
    assert not list((tmp_path / "recordings").rglob("*.part"))
    codecs = [r.codec for r in sim.stats.stats_for("rec-406").requests]
    assert codecs[:2] == ["opus", "opus"] and set(codecs[2:]) == {"pcm"}


async def test_retry_after_is_honoured_for_metadata_and_stream(
    sim: SimServer, start_daemon: StartDaemon, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sim.add_recording(
        {
            "id": "rec-ra",
            "segments": 2,
            "codecs": ["opus"],
            "faults": [
                {"kind": "metadata_status", "status": 429, "retry_after": 1, "times": 1},
                {"kind": "status", "status": 503, "retry_after": 1, "times": 1},
            ],
        }
    )
    daemon = await start_daemon()
    assert (await daemon.post(http, completed("rec-ra")))[0] == 202
    await daemon.wait_event("recording.completed", recording_id="rec-ra")
    retries = daemon.find("stream.retry", recording_id="rec-ra")
    assert [(r["status"], r["delay_s"]) for r in retries] == [(429, 1.0), (503, 1.0)]
    assert sim.stats.stats_for("rec-ra").metadata_requests == 2
    assert_exact(tmp_path, sim, "rec-ra", "opus")


async def test_stall_after_the_last_byte_finishes_without_refetching(
    sim: SimServer, start_daemon: StartDaemon, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # Every byte of the first batch arrives, then the end-of-body marker never
    # does: the resume's Range is past the end (416), and that is not a failure.
    sim.add_recording({"id": "rec-end", "segments": 4, "codecs": ["opus"]})
    first_batch = len(sim.body("rec-end", "opus", [0, 15, 30]))
    sim.add_recording(
        {
            "id": "rec-end",
            "segments": 4,
            "codecs": ["opus"],
            "faults": [{"kind": "stall", "after_bytes": first_batch, "on": [1]}],
        }
    )
    daemon = await start_daemon()
    assert (await daemon.post(http, completed("rec-end")))[0] == 202
    await daemon.wait_event("recording.completed", recording_id="rec-end")
    assert_exact(tmp_path, sim, "rec-end", "opus")
    statuses = [r.status for r in sim.stats.stats_for("rec-end").requests]
    assert statuses == [200, 416, 200]
    assert sim.stats.stats_for("rec-end").bytes_served == len(sim.body("rec-end", "opus"))


@pytest.mark.parametrize(("budget", "outcome"), [(600.0, "completed"), (0.0, "failed")])
async def test_throttling_is_paid_in_time_not_attempts(
    sim: SimServer,
    start_daemon: StartDaemon,
    http: aiohttp.ClientSession,
    tmp_path: Path,
    budget: float,
    outcome: str,
) -> None:
    sim.add_recording(
        {
            "id": "rec-th",
            "segments": 2,
            "codecs": ["opus"],
            "faults": [{"kind": "status", "status": 429, "retry_after": 0, "times": 5}],
        }
    )
    daemon = await start_daemon(streams={"max_attempts": 3, "throttle_budget_s": budget})
    assert (await daemon.post(http, completed("rec-th")))[0] == 202
    line = await daemon.wait_event(f"recording.{outcome}", recording_id="rec-th")
    retries = daemon.find("stream.retry", recording_id="rec-th")
    if outcome == "completed":
        assert line["attempts"] == 1
        assert len(retries) == 5 and all(r.get("throttled") for r in retries)
        # Retry-After: 0 still backs off: the waits grow, they do not spin.
        assert all(r["delay_s"] > 0 for r in retries)
        assert_exact(tmp_path, sim, "rec-th", "opus")
    else:
        assert line["attempts"] == 3 and line["error"] == "rate_limited"
        assert not any(r.get("throttled") for r in retries)
