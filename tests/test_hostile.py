"""A hostile CXone against the real daemon: every switch ends in a verified recording
or a failure with the right code, and no file anywhere ever outgrows what the
recording can hold plus the 64 KiB margin.

The daemon runs in process (``tests/hostile_rig.py``: its own composition root,
real journal and files); the memory test runs it as a process, since a
process's peak RSS is the point there.
"""

from __future__ import annotations

import hashlib
import wave
from pathlib import Path
from typing import Any

import pytest

from cxstream.fetcher.stream import StreamSettings
from cxstream.sim.server import SimServer
from tests.hostile_rig import SizeWatch, running

MIB = 1024 * 1024
MARGIN = StreamSettings(1.0, 1, 1).margin_bytes
WAV_HEADER = 44
# Fewer attempts than the harness's six: a failure is proven in three.
FAST = {"streams": {"max_attempts": 3}}
# No truly endless stream in a test: were the bound ever lost, the damage stops here.
SAFETY_BYTES = 64 * MIB


def _pcm(sim: SimServer, rid: str, faults: list[dict[str, Any]], segments: int = 2) -> int:
    sim.add_recording({"id": rid, "segments": segments, "codecs": ["pcm"], "faults": faults})
    return sim.expected(rid, "pcm")[0]


def _verified_wav(path: Path, sim: SimServer, rid: str) -> None:
    with wave.open(str(path), "rb") as w:
        frames = w.readframes(w.getnframes())
    size, sha = sim.expected(rid, "pcm")
    assert (len(frames), hashlib.sha256(frames).hexdigest()) == (size, sha)


# (faults, the stream.retry error the first attempt ends with)
RECOVERS: dict[str, tuple[list[dict[str, Any]], str]] = {
    "endless": (
        [{"kind": "endless", "max_bytes": SAFETY_BYTES, "times": 1}],
        "body_too_large: more than",
    ),
    "junk_tail chunked": (
        [{"kind": "junk_tail", "extra_bytes": MIB, "times": 1}],
        "body_too_large: more than",
    ),
    "junk_tail with Content-Length": (
        [{"kind": "junk_tail", "extra_bytes": MIB, "content_length": True, "times": 1}],
        "body_too_large: response declares",
    ),
    "junk_tail within the margin": (
        [{"kind": "junk_tail", "extra_bytes": 1000, "times": 1}],
        "repr_digest_mismatch",
    ),
    "gzip": ([{"kind": "gzip", "times": 1}], "content_encoding_refused: gzip"),
    "gzip_bomb": ([{"kind": "gzip_bomb", "times": 1}], "content_encoding_refused: gzip"),
    "huge_metadata": (
        [{"kind": "huge_metadata", "size_bytes": 64 * MIB, "times": 1}],
        "metadata_too_large",
    ),
    "many_segments": ([{"kind": "many_segments", "times": 1}], "metadata_too_large"),
    "huge_error": (
        [{"kind": "huge_error", "status": 503, "size_bytes": 64 * MIB, "times": 1}],
        "http_503",
    ),
    "huge_token": ([{"kind": "huge_token", "size_bytes": 64 * MIB, "on": [1]}], "token_too_large"),
}


@pytest.mark.parametrize("name", list(RECOVERS))
async def test_a_hostile_answer_once_costs_one_attempt_and_the_recording_verifies(
    tmp_path: Path, sim: SimServer, name: str
) -> None:
    faults, first_error = RECOVERS[name]
    size = _pcm(sim, "rec-h", faults)
    async with (
        running(tmp_path, sim, **FAST) as node,
        SizeWatch((node.cfg.storage.dir, node.cfg.storage.state_dir / "quarantine")) as watch,
    ):
        assert await node.post("rec-h") == 202
        done = await node.outcome("rec-h")
    assert done["event"] == "recording.completed", done
    assert done["attempts"] == 2
    (retry,) = node.lines("stream.retry", recording_id="rec-h")
    assert retry["error"].startswith(first_error), retry
    _verified_wav(Path(done["path"]), sim, "rec-h")
    assert not watch.over(size + WAV_HEADER + MARGIN)
    assert not list(node.cfg.storage.dir.rglob("*.part"))
    assert not (node.cfg.storage.state_dir / "quarantine").exists()


# (faults, the error recording.failed reports, extra config)
FAILS: dict[str, tuple[list[dict[str, Any]], str, dict[str, Any]]] = {
    "endless": (
        [{"kind": "endless", "max_bytes": SAFETY_BYTES}],
        "body_too_large: more than",
        {},
    ),
    "junk_tail chunked": ([{"kind": "junk_tail", "extra_bytes": MIB}], "body_too_large", {}),
    "junk_tail with Content-Length": (
        [{"kind": "junk_tail", "extra_bytes": MIB, "content_length": True}],
        "body_too_large: response declares",
        {},
    ),
    "junk_tail within the margin": (
        [{"kind": "junk_tail", "extra_bytes": 1000}],
        "repr_digest_mismatch",
        {},
    ),
    "gzip": ([{"kind": "gzip"}], "content_encoding_refused: gzip", {}),
    "gzip_bomb": ([{"kind": "gzip_bomb"}], "content_encoding_refused: gzip", {}),
    "huge_metadata chunked": (
        [{"kind": "huge_metadata", "size_bytes": 64 * MIB}],
        "metadata_too_large: over 1048576 bytes",
        {},
    ),
    "huge_metadata with Content-Length": (
        [{"kind": "huge_metadata", "size_bytes": 64 * MIB, "content_length": True}],
        f"metadata_too_large: {64 * MIB} bytes",
        {},
    ),
    "many_segments over the control bound": (
        [{"kind": "many_segments", "count": 100_000}],
        "metadata_too_large",
        {},
    ),
    "many_segments over cxone.max_segments": (
        [{"kind": "many_segments", "count": 100_000}],
        "metadata_too_many_segments: 100000 > 20000",
        {"cxone": {"max_control_bytes": 8 * MIB}},
    ),
    "many_segments planned, then refused by the server": (
        [{"kind": "many_segments", "count": 100_000}],
        "offset_out_of_range",
        {"cxone": {"max_control_bytes": 8 * MIB, "max_segments": 200_000}},
    ),
    "huge_error 503": (
        [{"kind": "huge_error", "status": 503, "size_bytes": 64 * MIB}],
        "http_503",
        {},
    ),
    "huge_error 404": (
        [{"kind": "huge_error", "status": 404, "size_bytes": 64 * MIB, "content_length": True}],
        "http_404",
        {},
    ),
    "huge_token": ([{"kind": "huge_token", "size_bytes": 64 * MIB}], "token_too_large", {}),
}
PERMANENT = {
    "many_segments over cxone.max_segments",
    "many_segments planned, then refused by the server",
    "huge_error 404",
}


@pytest.mark.parametrize("name", list(FAILS))
async def test_a_hostile_answer_every_time_fails_with_its_code_and_writes_nothing_large(
    tmp_path: Path, sim: SimServer, name: str
) -> None:
    faults, error, extra = FAILS[name]
    size = _pcm(sim, "rec-h", faults)
    quarantine = tmp_path / "state" / "quarantine"
    async with (
        running(tmp_path, sim, **FAST, **extra) as node,
        SizeWatch((node.cfg.storage.dir, quarantine)) as watch,
    ):
        assert await node.post("rec-h") == 202
        failed = await node.outcome("rec-h")
    assert failed["event"] == "recording.failed", failed
    assert failed["error"].startswith(error), failed
    assert failed["attempts"] == (1 if name in PERMANENT else 3)
    # The bound holds for every file the daemon wrote: part, published, quarantined.
    assert not watch.over(size + WAV_HEADER + MARGIN), watch.largest
    assert not list(node.cfg.storage.dir.rglob("rec-h.wav"))
    assert not list(node.cfg.storage.dir.rglob("*.part"))
    stats = sim.served("rec-h")
    if name.startswith("gzip"):
        # Refused on its header: nothing of the body was written anywhere.
        assert not quarantine.exists()
        assert all(r.bytes < 256 * 1024 for r in stats.requests), stats.requests
    if name.endswith("Content-Length") and not name.startswith("huge"):
        # Refused on its declared length: not one byte written, nothing to keep.
        assert not quarantine.exists()
    elif name.startswith(("endless", "junk_tail")):
        (evidence,) = quarantine.glob("rec-h.*.wav")
        assert evidence.stat().st_size <= size + WAV_HEADER + MARGIN
    if name.startswith(("endless", "junk_tail")):
        # The daemon hung up: the simulator never got to send its SAFETY_BYTES.
        await sim.wait_for(lambda: stats.active_streams == 0)
        assert all(r.bytes < SAFETY_BYTES for r in stats.requests)


async def test_an_endless_opus_stream_is_bounded_too(tmp_path: Path, sim: SimServer) -> None:
    fault = {"kind": "endless", "max_bytes": SAFETY_BYTES}
    sim.add_recording({"id": "rec-o", "segments": 3, "codecs": ["opus"], "faults": [fault]})
    size = sim.expected("rec-o", "opus")[0]
    async with (
        running(tmp_path, sim, **FAST) as node,
        SizeWatch((node.cfg.storage.dir, tmp_path / "state" / "quarantine")) as watch,
    ):
        assert await node.post("rec-o") == 202
        failed = await node.outcome("rec-o")
    assert failed["event"] == "recording.failed"
    # The repeated chain may break an Ogg rule before it breaks the bound;
    # either way it is refused, and nothing grew past the bound.
    assert failed["error"].split(":")[0] in {"body_too_large", "container_invalid"}, failed
    assert not watch.over(size + MARGIN), watch.largest


async def test_an_endless_batch_in_the_middle_is_held_to_what_is_left(
    tmp_path: Path, sim: SimServer
) -> None:
    # Three batches; the second one never ends. Its bound is the whole recording
    # minus the first batch, plus the margin: the file never passes size + margin.
    faults = [{"kind": "endless", "max_bytes": SAFETY_BYTES, "on": [2]}]
    size = _pcm(sim, "rec-m", faults, segments=7)
    async with running(tmp_path, sim, **FAST) as node, SizeWatch((node.cfg.storage.dir,)) as watch:
        assert await node.post("rec-m") == 202
        done = await node.outcome("rec-m")
    assert done["event"] == "recording.completed", done
    _verified_wav(Path(done["path"]), sim, "rec-m")
    assert not watch.over(size + WAV_HEADER + MARGIN), watch.largest
    (retry,) = node.lines("stream.retry", recording_id="rec-m")
    assert retry["error"].startswith("body_too_large")
