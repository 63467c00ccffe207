"""The archive outbox: at least once, one webhook-id per recording, across restarts."""

from __future__ import annotations

import signal
from collections import defaultdict
from pathlib import Path

import aiohttp

from cxstream.sim.server import SimServer
from tests.harness import Daemon, completed, write_config


async def test_sink_down_for_five_calls_and_a_restart_still_gets_everything_once_per_id(
    sim: SimServer, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    ids = ["rec-a1", "rec-a2", "rec-a3"]
    for rid in ids:
        sim.add_recording({"id": rid, "segments": 2, "codecs": ["opus"]})
    sim.state.archive_fail_remaining = 5
    config = write_config(
        tmp_path,
        sim,
        archive={"backoff_base_s": 0.2, "backoff_cap_s": 0.4, "backlog_report_s": 0.1},
        # Stop at once, so the restart (not the drain) delivers what is left.
        webhook={"drain_grace_s": 0},
    )
    daemon = Daemon(config)
    await daemon.start()
    for rid in ids:
        assert (await daemon.post(http, completed(rid)))[0] == 202
    await daemon.wait_for(lambda: len(daemon.find("archive.retry")) >= 2)
    backlog = await daemon.wait_event("archive.backlog")
    assert backlog["pending"] >= 1
    await daemon.signal(signal.SIGTERM)
    assert await daemon.stop() == 0
    retried_before = len([a for a in sim.announcements if a.status == 503])
    assert retried_before >= 2

    await daemon.start()  # the outbox is in the journal: the restart picks it up

    def delivered() -> set[str]:
        return {a.payload["data"]["recordingId"] for a in sim.announcements if a.status == 204}

    await sim.wait_for(lambda: delivered() == set(ids), timeout_s=20)
    await daemon.wait_for(lambda: len(daemon.find("archive.delivered")) >= 1)
    assert await daemon.stop() == 0

    by_recording: dict[str, set[str]] = defaultdict(set)
    for ann in sim.announcements:
        by_recording[ann.payload["data"]["recordingId"]].add(ann.webhook_id)
    assert set(by_recording) == set(ids)
    assert all(len(wids) == 1 for wids in by_recording.values()), by_recording
    assert len({next(iter(w)) for w in by_recording.values()}) == len(ids)
    assert sum(a.status == 503 for a in sim.announcements) == 5
    # The payload names the verified file and its hash.
    for ann in sim.announcements:
        data = ann.payload["data"]
        assert Path(data["path"]).is_file() and data["sha256"] and data["bytes"] > 0
