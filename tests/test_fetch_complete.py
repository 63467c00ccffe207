"""The fetch core in process: jobs that end in a verified, published recording.

Each test builds the daemon's own runner over a temporary journal and storage
(tests/inproc.py), against the in-process simulator, and runs one job to its
end. What is checked is what an archive relies on: the bytes are the source's,
the sidecar says how they were verified, the journal says completed, and no
part file is left behind.
"""

from __future__ import annotations

import hashlib
import wave
from pathlib import Path
from typing import Any

import pytest

from cxstream.formats import ogg, registry
from cxstream.sim.server import SimServer
from tests.inproc import Rig, rig


def assert_archived(
    r: Rig, rid: str, codec: str, offsets: list[int] | None = None
) -> dict[str, Any]:
    """The published file holds exactly the source's audio; its sidecar and line agree."""
    path = r.path(rid, codec)
    data = path.read_bytes()
    source = r.sim.body(rid, codec, offsets)
    if codec == "opus":
        assert data == source
        assert all(ogg.page_crc(raw) == page.crc for page, raw in ogg.iter_pages(data))
    else:
        with wave.open(str(path), "rb") as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
            assert w.readframes(w.getnframes()) == source
    if offsets is None:
        assert (len(source), hashlib.sha256(source).hexdigest()) == r.sim.expected(rid, codec)
    sidecar = r.sidecar(rid, codec)
    assert sidecar["recordingId"] == rid
    assert sidecar["codec"] == codec
    assert sidecar["contentType"] == registry.get(codec).content_type
    assert sidecar["path"] == str(path)
    assert sidecar["bytes"] == len(data)
    assert sidecar["sha256"] == hashlib.sha256(data).hexdigest()
    assert sidecar["sourceSha256"] == hashlib.sha256(source).hexdigest()
    (line,) = r.trail.find("recording.completed", recording_id=rid)
    assert (line["bytes"], line["sha256"], line["path"], line["codec"]) == (
        len(data),
        sidecar["sha256"],
        str(path),
        codec,
    )
    assert line["attempts"] == sidecar["attempts"]
    row = r.row(rid)
    assert (row["state"], row["checkpoint"]) == ("completed", None)
    assert not [p for p in r.files() if p.name.endswith(".part")]
    return sidecar


async def test_an_opus_recording_is_published_byte_exact_with_its_sidecar(
    tmp_path: Path, sim: SimServer
) -> None:
    sim.add_recording({"id": "rec-opus", "segments": 7, "codecs": ["opus", "pcm"]})
    async with rig(tmp_path, sim) as r:
        await r.run("rec-opus", contactId="c-1")
        sidecar = assert_archived(r, "rec-opus", "opus")
    assert sidecar["contactId"] == "c-1"
    assert sidecar["verified_by"] == ["repr-digest", "size", "sha256", "ogg-pages", "read-back"]
    assert [s["offset"] for s in sidecar["segments"]] == [0, 15, 30, 45, 60, 75, 90]
    assert sidecar["durationSeconds"] == 105
    assert sidecar["attempts"] == 1
    for key in ("ttfb_ms", "duration_ms", "startedAt", "completedAt"):
        assert sidecar[key] is not None, key
    # Offsets always as 0,15,30, never more than the advertised three per request.
    requests = sim.served("rec-opus").requests
    assert [r.offsets for r in requests] == [[0, 15, 30], [45, 60, 75], [90]]
    assert all(r.status == 200 and r.range is None for r in requests)
    assert r.trail.events() == [
        "journal.opened",
        "recording.started",
        *["stream.request"] * 3,
        "recording.completed",
    ]


async def test_pcm_becomes_a_wav_around_the_exact_samples(tmp_path: Path, sim: SimServer) -> None:
    sim.add_recording({"id": "rec-pcm", "segments": 4, "codecs": ["pcm"]})
    async with rig(tmp_path, sim) as r:
        await r.run("rec-pcm")
        sidecar = assert_archived(r, "rec-pcm", "pcm")
    assert sidecar["verified_by"] == ["repr-digest", "size", "sha256", "pcm-samples", "read-back"]
    assert r.path("rec-pcm", "pcm").name == "rec-pcm.wav"


async def test_the_webhooks_codec_goes_first(tmp_path: Path, sim: SimServer) -> None:
    sim.add_recording({"id": "rec-pref", "segments": 2, "codecs": ["opus", "pcm"]})
    async with rig(tmp_path, sim) as r:
        await r.run("rec-pref", codec="pcm")
        assert_archived(r, "rec-pref", "pcm")
    assert {q.codec for q in sim.served("rec-pref").requests} == {"pcm"}


async def test_a_codec_the_recording_lacks_falls_back_to_one_it_has(
    tmp_path: Path, sim: SimServer
) -> None:
    sim.add_recording({"id": "rec-p", "segments": 2, "codecs": ["opus"]})
    async with rig(tmp_path, sim) as r:
        await r.run("rec-p", codec="pcm")
        assert_archived(r, "rec-p", "opus")
    assert not r.trail.find("recording.codec_fallback")


async def test_a_subset_of_offsets_is_held_to_each_responses_digest(
    tmp_path: Path, sim: SimServer
) -> None:
    sim.add_recording({"id": "rec-part", "segments": 6, "codecs": ["opus"]})
    async with rig(tmp_path, sim) as r:
        await r.run("rec-part", offsets=[15, 45, 60])
        sidecar = assert_archived(r, "rec-part", "opus", [15, 45, 60])
    # The whole recording's size and sha256 cannot apply to a subset.
    assert sidecar["verified_by"] == ["repr-digest", "ogg-pages", "opus-container", "read-back"]
    assert [s["offset"] for s in sidecar["segments"]] == [15, 45, 60]
    assert [q.offsets for q in sim.served("rec-part").requests] == [[15, 45, 60]]


async def test_a_413_lowers_the_limit_and_replans_what_is_left(
    tmp_path: Path, sim: SimServer
) -> None:
    sim.add_recording(
        {"id": "rec-413", "segments": 5, "codecs": ["opus"], "enforce_max_segments": 2}
    )
    async with rig(tmp_path, sim) as r:
        await r.run("rec-413")
        assert_archived(r, "rec-413", "opus")
    requests = sim.served("rec-413").requests
    assert [(q.offsets, q.status) for q in requests] == [
        ([0, 15, 30], 413),
        ([0, 15], 200),
        ([30, 45], 200),
        ([60], 200),
    ]
    (retry,) = r.trail.find("stream.retry", recording_id="rec-413")
    assert retry["status"] == 413


async def test_a_406_mid_job_moves_to_the_next_codec_from_zero(
    tmp_path: Path, sim: SimServer
) -> None:
    sim.add_recording(
        {
            "id": "rec-406",
            "segments": 4,
            "codecs": ["opus", "pcm"],
            "faults": [{"kind": "codec_unavailable", "on": [2]}],
        }
    )
    async with rig(tmp_path, sim) as r:
        await r.run("rec-406")
        assert_archived(r, "rec-406", "pcm")
        (fallback,) = r.trail.find("recording.codec_fallback")
    assert (fallback["codec"], fallback["next_codec"], fallback["status"]) == ("opus", "pcm", 406)
    assert not r.path("rec-406", "opus").exists()
    codecs = [(q.codec, q.offsets) for q in sim.served("rec-406").requests]
    assert codecs == [
        ("opus", [0, 15, 30]),
        ("opus", [45]),
        ("pcm", [0, 15, 30]),
        ("pcm", [45]),
    ]


async def test_an_expired_token_is_refreshed_and_the_call_repeated_at_no_cost(
    tmp_path: Path, sim: SimServer
) -> None:
    sim.add_recording(
        {
            "id": "rec-tok",
            "segments": 5,
            "codecs": ["opus"],
            "faults": [{"kind": "expire_token", "on": [2]}],
        }
    )
    async with rig(tmp_path, sim) as r:
        await r.run("rec-tok")
        sidecar = assert_archived(r, "rec-tok", "opus")
    assert sim.state.tokens_issued == 2
    assert [q.status for q in sim.served("rec-tok").requests] == [200, 401, 200]
    # A 401 is the token's fault, not the recording's: no retry, no attempt.
    assert sidecar["attempts"] == 1 and not r.trail.find("stream.retry")


@pytest.mark.parametrize("codec", ["opus", "pcm"])
async def test_a_trickle_is_slow_but_no_failure(tmp_path: Path, sim: SimServer, codec: str) -> None:
    rate = 2_000_000
    fault = {"kind": "trickle", "bytes_per_second": rate, "on": [1]}
    sim.add_recording({"id": "rec-slow", "segments": 2, "codecs": [codec], "faults": [fault]})
    async with rig(tmp_path, sim) as r:
        await r.run("rec-slow")
        sidecar = assert_archived(r, "rec-slow", codec)
    assert sidecar["attempts"] == 1 and not r.trail.find("stream.retry")
    assert sim.served("rec-slow").requests[0].faults == ["trickle"]
