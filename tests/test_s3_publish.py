"""``storage.backend = "s3"`` wired into the fetcher: the daemon's own runner, in process.

Each test runs the runner the workers get (tests/inproc.py) against the
simulator and a real S3 endpoint process (moto, tests/s3server.py), and reads
the bucket back with a client of its own, as an operator would.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from cxstream.fetcher.job import JobInterrupted
from cxstream.journal import SqliteJournal
from cxstream.keys import POOL
from cxstream.sim.server import SimServer
from cxstream.sink.store import StoreOutage
from tests.harness import write_config
from tests.inproc import DAY, rig, webhook_request
from tests.test_ops_cli import _cli

pytest.importorskip("aiobotocore")
from aiobotocore.session import get_session

from cxstream.daemon import StartError

PREFIX = "archive/"


@pytest.fixture
async def store(s3_endpoint: str) -> AsyncIterator[Any]:
    """The operator's own client on the endpoint the daemon uses."""
    async with get_session().create_client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test-secret",
    ) as client:
        yield client


@pytest.fixture
async def bucket(store: Any) -> str:
    name = f"wired-{uuid.uuid4().hex[:12]}"
    await store.create_bucket(Bucket=name)
    return name


def s3(endpoint: str, bucket: str, **extra: Any) -> dict[str, Any]:
    """The [storage] overrides that make a rig (or a daemon) publish to ``bucket``."""
    return {
        "backend": "s3",
        "bucket": bucket,
        "prefix": PREFIX,
        "endpoint": endpoint,
        "region": "us-east-1",
        "access_key_id": "test",
        "secret_access_key": "test-secret",
        **extra,
    }


def closed_port() -> str:
    """An endpoint nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def read(store: Any, bucket: str, key: str) -> bytes:
    got = await store.get_object(Bucket=bucket, Key=key)
    return await got["Body"].read()  # type: ignore[no-any-return]


async def keys(store: Any, bucket: str) -> list[str]:
    listed = await store.list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def spool_files(tmp: Path) -> list[Path]:
    return sorted(p for p in (tmp / "state" / "spool").rglob("*") if p.is_file())


async def test_a_recording_is_verified_in_the_spool_then_uploaded_with_its_sidecar(
    tmp_path: Path, sim: SimServer, s3_endpoint: str, store: Any, bucket: str
) -> None:
    sim.add_recording({"id": "rec-o", "segments": 3, "codecs": ["opus"]})
    sim.add_recording({"id": "rec-w", "segments": 2, "codecs": ["pcm"]})
    storage = s3(s3_endpoint, bucket)
    async with rig(tmp_path, sim, storage=storage) as r:
        await r.run("rec-o")
        await r.run("rec-w")
        for rid, codec, ext, header in (("rec-o", "opus", "opus", 0), ("rec-w", "pcm", "wav", 44)):
            key = f"{PREFIX}{DAY}/{rid}.{ext}"
            data = await read(store, bucket, key)
            size, sha = sim.expected(rid, codec)
            assert len(data) - header == size
            assert hashlib.sha256(data[header:]).hexdigest() == sha
            sidecar = orjson.loads(await read(store, bucket, f"{PREFIX}{DAY}/{rid}.json"))
            url = f"s3://{bucket}/{key}"
            assert sidecar["path"] == url
            assert sidecar["sha256"] == hashlib.sha256(data).hexdigest()
            assert orjson.loads(r.row(rid)["result"])["path"] == url
            (done,) = r.trail.find("recording.completed", recording_id=rid)
            assert done["path"] == url and done["bytes"] == len(data)
        (opened,) = r.trail.find("store.opened")
        assert opened["store"] == f"s3://{bucket}/{PREFIX}" and opened["stale_parts"] == 0
    # Verified in the spool, removed once uploaded; storage.dir is not used at all.
    assert spool_files(tmp_path) == []
    assert not (tmp_path / "recordings").exists()
    assert await keys(store, bucket) == sorted(
        f"{PREFIX}{DAY}/{n}" for n in ("rec-o.opus", "rec-o.json", "rec-w.wav", "rec-w.json")
    )


async def test_the_announcement_names_the_object(
    tmp_path: Path, sim: SimServer, s3_endpoint: str, bucket: str
) -> None:
    sim.add_recording({"id": "rec-a", "segments": 1, "codecs": ["opus"]})
    archive = {"url": sim.archive_url}
    async with rig(tmp_path, sim, storage=s3(s3_endpoint, bucket), archive=archive) as r:
        await r.run("rec-a")
        await sim.wait_for(lambda: bool(sim.announcements), 20)
    (sent,) = sim.announcements
    assert sent.payload["data"]["path"] == f"s3://{bucket}/{PREFIX}{DAY}/rec-a.opus"


async def test_a_store_outage_hands_the_job_back_and_the_next_run_only_uploads(
    tmp_path: Path, sim: SimServer, s3_endpoint: str, store: Any, bucket: str
) -> None:
    sim.add_recording({"id": "rec-d", "segments": 3, "codecs": ["pcm"]})
    down = s3(closed_port(), bucket)
    async with rig(tmp_path, sim, storage=down) as r:
        # Unreachable at start: the node starts, paused, and says so.
        (paused,) = r.trail.find("store.paused")
        assert paused["error"].startswith("s3_unreachable")
        with pytest.raises(JobInterrupted) as raised:
            await r.run("rec-d")
        assert isinstance(raised.value.__cause__, StoreOutage)
        row = r.row("rec-d")
        # Handed back, not failed, no attempt charged; the checkpoint covers the whole file.
        assert (row["state"], row["attempts"]) == ("queued", 0)
        checkpoint = orjson.loads(row["checkpoint"])
        assert not r.trail.find("recording.failed")
    (part,) = spool_files(tmp_path)
    assert part.name == ".rec-d.wav.part" and part.stat().st_size == checkpoint["offset"]
    served = sim.served("rec-d").bytes_served
    size, sha = sim.expected("rec-d", "pcm")
    assert served == size
    async with rig(tmp_path, sim, storage=s3(s3_endpoint, bucket)) as again:
        await again.runner.run(await again.claim())
        (started,) = again.trail.find("recording.started")
        assert started["resumed_bytes"] == size
        assert again.trail.find("recording.completed", recording_id="rec-d")
    assert sim.served("rec-d").bytes_served == served  # nothing streamed twice
    data = await read(store, bucket, f"{PREFIX}{DAY}/rec-d.wav")
    assert hashlib.sha256(data[44:]).hexdigest() == sha
    assert spool_files(tmp_path) == []


class Front:
    """A real HTTP front for the S3 endpoint, switched "down" to answer as an
    overloaded store does (503 SlowDown), "up" to pass every request through."""

    SLOW_DOWN = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
        b"<Message>Please reduce your request rate.</Message></Error>"
    )
    HOP = frozenset({"host", "content-length", "transfer-encoding", "connection", "expect"})

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.down = False
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            return web.Response(status=503, body=self.SLOW_DOWN, content_type="application/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in self.HOP}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method,
                self.upstream + request.raw_path,
                data=await request.read(),
                headers=headers,
                allow_redirects=False,
            ) as upstream,
        ):
            body = await upstream.read()
            back = {k: v for k, v in upstream.headers.items() if k.lower() not in self.HOP}
        answer = web.Response(status=upstream.status, body=body or None, headers=back)
        if request.method == "HEAD":
            # A HEAD's length is the object's: botocore reads ContentLength from it.
            answer.headers["Content-Length"] = upstream.headers.get("Content-Length", "0")
        return answer


@pytest.fixture
async def front(s3_endpoint: str) -> AsyncIterator[Front]:
    gate = Front(s3_endpoint)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", gate.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    gate.url = f"http://{host}:{port}"
    yield gate
    await runner.cleanup()


async def test_the_workers_pause_while_the_store_is_down_and_resume_without_refetching(
    tmp_path: Path, sim: SimServer, front: Front, store: Any, bucket: str
) -> None:
    sim.add_recording({"id": "rec-p", "segments": 2, "codecs": ["opus"]})
    size, sha = sim.expected("rec-p", "opus")
    async with rig(tmp_path, sim, storage=s3(front.url, bucket)) as r:
        assert not r.trail.find("store.paused")  # the store answered at start
        front.down = True
        await r.journal.enqueue(webhook_request("rec-p"))
        pool = r.app[POOL]
        pool.start()
        try:
            pool.wake()
            stopped = await r.trail.wait("recording.interrupted")
            assert (stopped["recording_id"], stopped["reason"]) == ("rec-p", "store")
            (paused,) = r.trail.find("store.paused")
            assert paused["error"].startswith("s3_throttled")
            assert r.row("rec-p")["state"] == "queued"
            sample = r.metrics.registry.get_sample_value
            assert sample("cxstream_jobs_interrupted_total", {"reason": "store"}) == 1
            front.down = False
            done = await r.trail.wait("recording.completed")
        finally:
            await pool.stop(5.0)
        events = r.trail.events()
        # No job was taken while the store was known down: it resumed first.
        second_start = [i for i, e in enumerate(events) if e == "recording.started"][1]
        assert events.index("store.resumed") < second_start
        assert r.trail.find("recording.started")[1]["resumed_bytes"] == size
        assert done["attempts"] == 1 and not r.trail.find("recording.failed")
    assert sim.served("rec-p").bytes_served == size  # streamed once, uploaded on the retry
    data = await read(store, bucket, f"{PREFIX}{DAY}/rec-p.opus")
    assert hashlib.sha256(data).hexdigest() == sha


async def test_a_store_refusal_is_a_clear_recording_failed(
    tmp_path: Path, sim: SimServer, s3_endpoint: str, store: Any, bucket: str
) -> None:
    sim.add_recording({"id": "rec-n", "segments": 1, "codecs": ["opus"]})
    async with rig(tmp_path, sim, storage=s3(s3_endpoint, bucket)) as r:
        await store.delete_bucket(Bucket=bucket)  # gone after the start-up check
        await r.run("rec-n")
        (failed,) = r.trail.find("recording.failed", recording_id="rec-n")
        assert failed["error"].startswith("s3_no_such_bucket: ")
        assert failed["status"] == 404
        assert r.row("rec-n")["state"] == "failed"
        assert not r.trail.find("recording.completed")
    assert spool_files(tmp_path) == []


async def test_a_key_holding_other_bytes_is_kept_and_ours_goes_beside_it(
    tmp_path: Path, sim: SimServer, s3_endpoint: str, store: Any, bucket: str
) -> None:
    sim.add_recording({"id": "rec-c", "segments": 1, "codecs": ["opus"]})
    taken = f"{PREFIX}{DAY}/rec-c.opus"
    await store.put_object(Bucket=bucket, Key=taken, Body=b"someone else's bytes")
    async with rig(tmp_path, sim, storage=s3(s3_endpoint, bucket)) as r:
        await r.run("rec-c")
        (conflict,) = r.trail.find("recording.conflict", recording_id="rec-c")
        (done,) = r.trail.find("recording.completed", recording_id="rec-c")
    sha = conflict["sha256"]
    beside = f"{PREFIX}{DAY}/rec-c.conflict-{sha[:12]}.opus"
    assert conflict["path"] == f"s3://{bucket}/{taken}"
    assert conflict["existing_sha256"] is None  # a plain PUT without our metadata or checksum
    assert conflict["published"] == done["path"] == f"s3://{bucket}/{beside}"
    assert await read(store, bucket, taken) == b"someone else's bytes"
    assert hashlib.sha256(await read(store, bucket, beside)).hexdigest() == sha
    sidecar = orjson.loads(await read(store, bucket, beside.removesuffix(".opus") + ".json"))
    assert sidecar["path"] == done["path"]


async def test_retention_on_a_bucket_without_object_lock_stops_the_start(
    tmp_path: Path, sim: SimServer, s3_endpoint: str, bucket: str
) -> None:
    locked = s3(s3_endpoint, bucket, retention_mode="GOVERNANCE", retention_days=1)
    with pytest.raises(StartError, match=r"^storage: s3_object_lock_invalid: "):
        async with rig(tmp_path, sim, storage=locked):
            pass


async def test_a_node_whose_bucket_lacks_object_lock_says_so_in_one_line_and_exits_2(
    tmp_path: Path, sim: SimServer, s3_endpoint: str, bucket: str
) -> None:
    storage = s3(s3_endpoint, bucket, retention_mode="COMPLIANCE", retention_days=1)
    config = write_config(tmp_path, sim, storage=storage)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cxstream", "run", "--config", str(config), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 2
    lines = err.decode().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"cxstream: storage: s3_object_lock_invalid: check bucket {bucket}")
    assert b"test-secret" not in err + out and b"Traceback" not in err


async def test_cxstream_fetch_publishes_to_the_bucket_like_a_worker(
    tmp_path: Path, sim: SimServer, s3_endpoint: str, store: Any, bucket: str
) -> None:
    sim.add_recording({"id": "rec-f", "segments": 2, "codecs": ["opus"]})
    cfg = str(write_config(tmp_path, sim, storage=s3(s3_endpoint, bucket)))
    journal = SqliteJournal(tmp_path / "state" / "journal.sqlite3")
    await journal.open()  # a journal exists once a daemon has run
    await journal.close()
    code, out, err = await _cli("fetch", "--config", cfg, "rec-f", "--json")
    assert code == 0, err
    path = orjson.loads(out)["result"]["path"]
    assert path.startswith(f"s3://{bucket}/{PREFIX}") and path.endswith("/rec-f.opus")
    key = path.removeprefix(f"s3://{bucket}/")
    assert await read(store, bucket, key) == sim.body("rec-f", "opus")
    assert spool_files(tmp_path) == []
