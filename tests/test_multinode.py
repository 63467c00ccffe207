"""Two daemons on one PostgreSQL journal: the composition root's wiring, end to end.

Each node is a real ``cxstream run`` process with its own state directory
(filesystem storage here; object storage is wired into the fetcher later).
What is checked: the same callback to both nodes queues one job; work posted
to one node is shared with the other; every audit line names its node.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from cxstream.sim.server import SimServer
from tests.harness import Daemon, completed, sign, write_config
from tests.schema import audit_validator

pytest.importorskip("psycopg")


def node_config(tmp_path: Path, sim: SimServer, name: str, dsn: str) -> Path:
    home = tmp_path / name
    home.mkdir()
    journal = {"backend": "postgres", "dsn": dsn, "node": name, "lease_s": 5}
    return write_config(home, sim, journal=journal, streams={"concurrency": 2})


async def test_two_nodes_share_one_queue_and_sign_their_lines(
    sim: SimServer, http: aiohttp.ClientSession, tmp_path: Path, pg_dsn: str
) -> None:
    ids = [f"rec-{i:02d}" for i in range(8)]
    for rid in ids:
        sim.add_recording({"id": rid, "segments": 6, "codecs": ["opus"]})
    one = await Daemon(node_config(tmp_path, sim, "node-1", pg_dsn)).start()
    two = await Daemon(node_config(tmp_path, sim, "node-2", pg_dsn)).start()
    try:
        # The same callback (same webhook-id) reaching both nodes at once: one job.
        body, headers = completed(ids[0]), sign(completed(ids[0]))
        answers = await asyncio.gather(
            one.post(http, body, headers=headers), two.post(http, body, headers=headers)
        )
        assert sorted(status for status, _ in answers) == [200, 202]
        # The rest all go to node-1; node-2's idle workers are woken to help.
        for rid in ids[1:]:
            assert (await one.post(http, completed(rid)))[0] == 202

        def done() -> set[str]:
            lines = one.find("recording.completed") + two.find("recording.completed")
            return {e["recording_id"] for e in lines}

        # node-1's wait re-checks twice a second, so node-2's lines count too.
        await one.wait_for(lambda: done() == set(ids), 60)
        by_node = {
            d: [e["recording_id"] for e in d.find("recording.completed")] for d in (one, two)
        }
        assert sorted(by_node[one] + by_node[two]) == sorted(ids)  # each exactly once
        assert by_node[two], "node-2 never took a job queued through node-1"
    finally:
        codes = [await one.stop(), await two.stop()]
    assert codes == [0, 0]
    for daemon, name in ((one, "node-1"), (two, "node-2")):
        assert daemon.raw_lines and all(e.get("node") == name for e in daemon.events)
        (opened,) = daemon.find("journal.opened")
        assert opened["path"].startswith("postgresql://127.0.0.1:")
        for raw in daemon.raw_lines:
            assert pg_dsn.encode() not in raw


async def test_a_node_whose_database_is_unreachable_says_so_and_exits_2(
    tmp_path: Path, sim: SimServer, pg_cluster: object
) -> None:
    dsn = "postgresql://cx:Db-Password-4b1d@127.0.0.1:9/cxstream"  # port 9: nothing there
    config = node_config(tmp_path, sim, "node-x", dsn)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cxstream", "run", "--config", str(config), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 2
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cxstream: journal: cannot open"), err
    assert b"Db-Password-4b1d" not in err + out and b"Traceback" not in err


def test_the_schema_knows_the_node_field() -> None:
    validator = audit_validator()
    line = {"ts": "2026-11-24T05:00:00Z", "level": "info", "event": "daemon.stopped"}
    assert not list(validator.iter_errors({**line, "node": "node-1"}))
    assert list(validator.iter_errors({**line, "node": ""}))
