"""The daemon's memory stays flat under oversized answers: a process, its peak RSS.

Each hostile recording below would, read whole, cost the process tens of MiB
(64 MiB of metadata, an error body, a token; a 128 MiB gzip bomb inflated).
Read up to their bounds, they cost a few MiB of buffers at most. This is not a
benchmark: the limit is wide, the failure it catches is a body read whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cxstream.sim.server import SimServer
from tests.conftest import StartDaemon
from tests.harness import completed

MIB = 1024 * 1024
GROWTH_LIMIT = 30 * MIB

HOSTILE: dict[str, dict[str, Any]] = {
    "rec-meta": {"kind": "huge_metadata", "size_bytes": 64 * MIB},
    "rec-meta-cl": {"kind": "huge_metadata", "size_bytes": 64 * MIB, "content_length": True},
    "rec-many": {"kind": "many_segments", "count": 100_000},
    "rec-err": {"kind": "huge_error", "status": 503, "size_bytes": 64 * MIB},
    "rec-tok": {"kind": "huge_token", "size_bytes": 64 * MIB},
    "rec-bomb": {"kind": "gzip_bomb", "inflated_bytes": 256 * MIB},
    "rec-endless": {"kind": "endless", "max_bytes": 64 * MIB},
}


def peak_rss(pid: int) -> int:
    """VmHWM: the most resident memory the process has ever had, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
async def test_peak_rss_stays_flat_under_oversized_answers(
    sim: SimServer, start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    sim.add_recording({"id": "rec-warm", "segments": 4, "codecs": ["pcm"]})
    for rid, fault in HOSTILE.items():
        sim.add_recording({"id": rid, "segments": 2, "codecs": ["pcm"], "faults": [fault]})
    daemon = await start_daemon(streams={"max_attempts": 3, "concurrency": 2})
    assert daemon.proc is not None
    # A normal recording first: the baseline includes everything a job touches.
    assert (await daemon.post(http, completed("rec-warm")))[0] == 202
    await daemon.wait_event("recording.completed", recording_id="rec-warm")
    before = peak_rss(daemon.proc.pid)
    # One at a time: a huge_token answer revokes the token every job shares.
    for rid in HOSTILE:
        assert (await daemon.post(http, completed(rid)))[0] == 202
        failed = await daemon.wait_event("recording.failed", recording_id=rid, timeout_s=60)
        assert failed["attempts"] >= 1
    after = peak_rss(daemon.proc.pid)
    assert after - before < GROWTH_LIMIT, f"peak RSS {before / MIB:.1f} → {after / MIB:.1f} MiB"
    errors = {e["recording_id"]: e["error"].split(":")[0] for e in daemon.find("recording.failed")}
    assert errors == {
        "rec-meta": "metadata_too_large",
        "rec-meta-cl": "metadata_too_large",
        "rec-many": "metadata_too_large",
        "rec-err": "http_503",
        "rec-tok": "token_too_large",
        "rec-bomb": "content_encoding_refused",
        "rec-endless": "body_too_large",
    }
    # The bomb stayed the few KiB it is on the wire.
    bomb = sim.served("rec-bomb")
    assert all(r.bytes < 512 * 1024 for r in bomb.requests)
    assert await daemon.stop() == 0
