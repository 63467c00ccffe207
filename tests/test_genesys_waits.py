"""Genesys transcoding waits against the job's own watchdog, in process.

The recordings API holds a list request up to ``maxWaitMs`` while it
transcodes; a hold longer than ``streams.idle_timeout_s`` would be cut by the
control call's watchdog and charged as a stall (found by ``cxstream demo
--platform genesys``, which runs with a 2 s idle timeout).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cxstream.sim.platform_servers import GenesysSim
from tests.platform_rig import drain, genesys_rig, submit_contact


@pytest.fixture
async def genesys() -> AsyncIterator[GenesysSim]:
    async with GenesysSim() as sim:
        yield sim


async def test_a_transcoding_hold_stays_inside_the_idle_timeout(
    tmp_path: Path, genesys: GenesysSim
) -> None:
    # Transcoding (1 s) outlasts the rig's 0.5 s idle timeout but not maxWaitMs's 5 s.
    genesys.add_conversation({"id": "c-hold", "recording": [{"id": "r-hold", "transcode_s": 1}]})
    async with genesys_rig(tmp_path, genesys) as r:
        assert r.cfg.streams.idle_timeout_s == 0.5
        await submit_contact(r, "c-hold")
        assert await drain(r) == ["c-hold", "r-hold"]
        assert r.row("r-hold")["state"] == "completed"
        errors = [line["error"] for line in r.trail.find("stream.retry")]
        assert errors, "the transcoding wait was never seen"
        assert not [e for e in errors if e.startswith("stalled")], errors
        assert all(line.get("not_ready") for line in r.trail.find("stream.retry")), errors


async def test_a_listing_still_transcoding_is_polled_again_when_the_estimate_says(
    tmp_path: Path, genesys: GenesysSim
) -> None:
    genesys.add_conversation({"id": "c-est", "recording": [{"id": "r-est", "transcode_s": 1}]})
    async with genesys_rig(tmp_path, genesys) as r:
        await submit_contact(r, "c-est")
        assert await drain(r) == ["c-est", "r-est"]
        (wait,) = [
            line
            for line in r.trail.find("stream.retry")
            if line["error"].startswith("recordings_not_listed_yet")
        ]
        # The remaining estimate (under 1 s), not the 5 s default of a wait without a hint.
        assert 0 < wait["delay_s"] <= 1.0, wait  # the estimate's, not the 5 s default
