"""The whole path once, for real: signed webhook → journal → stream → verified file → callback.

One daemon process, several recordings at once, each answered and archived
through real sockets. How each fault ends is tests/test_fetch_*.py's, in
process; crashes and signals are tests/test_resilience.py's.
"""

from __future__ import annotations

import hashlib
import wave
from pathlib import Path

import aiohttp
import orjson

from cxstream.formats import ogg
from cxstream.sim.server import SimServer
from cxstream.sink.record import final_path, sidecar_path
from tests.conftest import StartDaemon
from tests.harness import ARCHIVE_SECRET, CLIENT_SECRET, WEBHOOK_SECRET, Daemon, completed

DAY = "2026/11/24"


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
    path = final_path(tmp_path / "recordings", DAY, rid, codec)
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
    sidecar = orjson.loads(sidecar_path(path, rid).read_bytes())
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
        for req in sim.served(rid).requests:
            assert req.status in (200, 206), (rid, req)
            assert isinstance(req.offsets, list) and len(req.offsets) <= 3
    statuses_413 = [r.status for r in sim.served("rec-413").requests]
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
    secrets = [WEBHOOK_SECRET, CLIENT_SECRET, ARCHIVE_SECRET, *sim.state.tokens]
    for raw in daemon.raw_lines:
        event = orjson.loads(raw)
        assert {"ts", "level", "event"} <= event.keys()
        for secret in secrets:
            assert secret.encode() not in raw
