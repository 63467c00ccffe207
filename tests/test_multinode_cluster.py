"""Three nodes, one PostgreSQL journal, one S3 bucket, one node killed mid-stream.

Each node is a real ``cxstream run`` process with its own state directory and
spool; they share a throwaway PostgreSQL database (tests/pg.py) and a bucket on
moto's S3 server (tests/s3server.py), and fetch from the in-process simulator.
A hundred recordings are posted round-robin to the three webhook ports; every
fifth one trickles, so streams are in flight when the node streaming one of
them is killed with SIGKILL. Then, read from the outside:

- the bucket holds every recording exactly once, byte for byte the
  simulator's source, each with its sidecar, and nothing else;
- the journal has every job completed, none lost, and names the node that
  archived it; that node's ``recording.completed`` line says the same;
- the killed node's streams were taken over (from zero) by the others;
- every recording was announced at least once;
- when the killed node comes back, it removes its stale spool files.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from cxstream.sim.server import SimServer
from tests.harness import Daemon, completed, write_config
from tests.inproc import DAY

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("aiobotocore")
from aiobotocore.session import get_session  # noqa: E402

from tests.test_s3_publish import PREFIX, s3  # noqa: E402

RECORDINGS = [f"rec-{i:03d}" for i in range(100)]
TRICKLING = set(RECORDINGS[::5])
NODES = ("node-1", "node-2", "node-3")


@pytest.fixture
async def store(s3_endpoint: str) -> AsyncIterator[Any]:
    async with get_session().create_client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test-secret",
    ) as client:
        yield client


def rows(dsn: str) -> dict[str, tuple[str, str | None, dict[str, Any] | None]]:
    """recording id → (state, owner, result), read as an operator would."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute("SELECT recording_id, state, owner, result FROM jobs").fetchall()
    return {rid: (state, owner, result) for rid, state, owner, result in found}


async def until(check: Callable[[], Awaitable[Any]], within_s: float, what: str) -> Any:
    """Re-check a condition until it holds (never a fixed sleep standing in for it)."""
    deadline = time.monotonic() + within_s
    while not (result := await check()):
        assert time.monotonic() < deadline, f"not within {within_s}s: {what}"
        await asyncio.sleep(0.1)
    return result


def corpus(sim: SimServer) -> None:
    for rid in RECORDINGS:
        faults = [{"kind": "trickle", "bytes_per_second": 12000}] if rid in TRICKLING else []
        sim.add_recording(
            {"id": rid, "segments": 2, "codecs": ["opus"], "max_segments": 3, "faults": faults}
        )


def node_configs(tmp: Path, sim: SimServer, dsn: str, storage: dict[str, Any]) -> dict[str, Path]:
    configs = {}
    for name in NODES:
        home = tmp / name
        home.mkdir()
        configs[name] = write_config(
            home,
            sim,
            journal={"backend": "postgres", "dsn": dsn, "node": name, "lease_s": 3},
            storage=storage,
            streams={"concurrency": 4},
        )
    return configs


def streaming(nodes: dict[str, Daemon], sim: SimServer) -> str | None:
    """A node streaming a trickling recording, bytes already served (None: not yet)."""
    for name, daemon in nodes.items():
        done = {e["recording_id"] for e in daemon.find("recording.completed")}
        for event in daemon.find("recording.started"):
            rid = event["recording_id"]
            if rid in TRICKLING and rid not in done and sim.served(rid).bytes_served:
                return name
    return None


async def check_bucket(store: Any, bucket: str, sim: SimServer) -> None:
    """Each recording exactly once, intact, with its sidecar; nothing else, nothing half-done."""
    listed = await store.list_objects_v2(Bucket=bucket)
    assert not listed["IsTruncated"]
    keys = sorted(o["Key"] for o in listed["Contents"])
    wanted = sorted(f"{PREFIX}{DAY}/{rid}.{ext}" for rid in RECORDINGS for ext in ("opus", "json"))
    assert keys == wanted
    assert not (await store.list_multipart_uploads(Bucket=bucket)).get("Uploads")
    for rid in RECORDINGS:
        key = f"{PREFIX}{DAY}/{rid}.opus"
        data = await (await store.get_object(Bucket=bucket, Key=key))["Body"].read()
        size, sha = sim.expected(rid, "opus")
        assert (len(data), hashlib.sha256(data).hexdigest()) == (size, sha), rid
        side = await store.get_object(Bucket=bucket, Key=f"{PREFIX}{DAY}/{rid}.json")
        sidecar = orjson.loads(await side["Body"].read())
        assert sidecar["path"] == f"s3://{bucket}/{key}" and sidecar["sha256"] == sha


def check_who_did_what(
    nodes: dict[str, Daemon], journal: dict[str, Any], bucket: str, victim: str, cut_off: set[str]
) -> None:
    """One recording.completed per recording, by the node the journal names as its owner."""
    by_node = {
        name: {e["recording_id"] for e in d.find("recording.completed")}
        for name, d in nodes.items()
    }
    assert sum(len(v) for v in by_node.values()) == len(RECORDINGS)
    for rid in RECORDINGS:
        state, owner, result = journal[rid]
        assert state == "completed" and result["path"] == f"s3://{bucket}/{PREFIX}{DAY}/{rid}.opus"
        (name,) = [n for n, done in by_node.items() if rid in done]
        assert owner == name, rid
    # The victim's streams were taken over by the others, and started again from zero.
    for rid in cut_off:
        owner = journal[rid][1]
        assert owner != victim
        assert nodes[owner].find("recording.started", recording_id=rid)[-1]["resumed_bytes"] == 0
    for name, daemon in nodes.items():
        assert daemon.raw_lines and all(e.get("node") == name for e in daemon.events)


async def test_three_nodes_archive_everything_exactly_once_though_one_is_killed(
    tmp_path: Path,
    sim: SimServer,
    http: aiohttp.ClientSession,
    pg_dsn: str,
    s3_endpoint: str,
    store: Any,
) -> None:
    bucket = f"cluster-{uuid.uuid4().hex[:12]}"
    await store.create_bucket(Bucket=bucket)
    corpus(sim)
    configs = node_configs(tmp_path, sim, pg_dsn, s3(s3_endpoint, bucket))
    nodes = {name: Daemon(configs[name]) for name in NODES}
    await asyncio.gather(*(d.start() for d in nodes.values()))
    async with http.get(f"{nodes['node-1'].admin_url}/readyz") as resp:
        ready = await resp.json()
    assert resp.status == 200 and ready["checks"]["store"] is True

    # The load balancer: webhooks spread over the three nodes.
    async def post(i: int, rid: str) -> int:
        status, _ = await nodes[NODES[i % 3]].post(http, completed(rid))
        return status

    assert set(await asyncio.gather(*(post(i, r) for i, r in enumerate(RECORDINGS)))) == {202}

    async def in_flight() -> str | None:
        return streaming(nodes, sim)

    victim_name = await until(in_flight, 20, "a trickling stream in flight")
    victim = nodes[victim_name]
    await victim.kill()  # SIGKILL: no checkpoint, no hand-back, no goodbye
    started = {e["recording_id"] for e in victim.find("recording.started")}
    cut_off = started - {e["recording_id"] for e in victim.find("recording.completed")}
    assert cut_off, "the victim had nothing in flight"

    async def all_completed() -> bool:
        found = await asyncio.to_thread(rows, pg_dsn)
        return len(found) == len(RECORDINGS) and all(r[0] == "completed" for r in found.values())

    await until(all_completed, 40, "every job completed")
    announced = lambda: {a.payload["data"]["recordingId"] for a in sim.announcements}  # noqa: E731
    await sim.wait_for(lambda: announced() >= set(RECORDINGS), 20)
    await check_bucket(store, bucket, sim)
    check_who_did_what(nodes, await asyncio.to_thread(rows, pg_dsn), bucket, victim_name, cut_off)

    # The victim comes back: its part files are no longer its own, and go.
    spool = tmp_path / victim_name / "state" / "spool"
    left = {p.name for p in spool.rglob("*.part")}
    assert left and left <= {f".{rid}.opus.part" for rid in cut_off}
    back = await Daemon(configs[victim_name]).start()
    (opened,) = back.find("store.opened")
    assert opened["stale_parts"] == len(left)
    assert opened["store"] == f"s3://{bucket}/{PREFIX}"
    assert not list(spool.rglob("*.part"))
    survivors = [d for n, d in nodes.items() if n != victim_name]
    assert [await d.stop() for d in (*survivors, back)] == [0, 0, 0]
