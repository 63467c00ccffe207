"""The simulator's archive sink, its /_sim control routes, corpus files and CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from cxstream.sim import (
    DEFAULT_ARCHIVE_SECRET,
    FaultSpec,
    SimServer,
    default_corpus,
    load_corpus,
)
from cxstream.sim.cli import main as cli_main
from tests.sim.client import (
    ARCHIVE_SECRET,
    basic,
    fetch,
    query,
    sign,
)

REPO = Path(__file__).resolve().parents[2]

# -- archive sink ------------------------------------------------------------------


async def test_archive_sink_verifies_and_records(
    session: aiohttp.ClientSession, sim: SimServer
) -> None:
    payload = {"type": "recording.archived", "data": {"recordingId": "rec-a", "bytes": 1}}
    body = json.dumps(payload).encode()
    async with session.post(sim.archive_url, data=body, headers=sign(ARCHIVE_SECRET, body)) as r:
        assert r.status == 204
    wrong = sign("whsec_" + base64.b64encode(b"another secret").decode(), body)
    garbage = [
        {},
        wrong,
        {**sign(ARCHIVE_SECRET, body), "webhook-signature": "no-comma"},
        {**sign(ARCHIVE_SECRET, body), "webhook-signature": "v1,!!notbase64"},
        {**sign(ARCHIVE_SECRET, body), "webhook-timestamp": "nan"},
        {**sign(ARCHIVE_SECRET, body), "webhook-timestamp": "1"},
    ]
    for headers in garbage:
        async with session.post(sim.archive_url, data=body, headers=headers) as r:
            assert r.status == 401
    async with session.post(
        sim.archive_url, data=b"\xff\xfe", headers=sign(ARCHIVE_SECRET, b"x")
    ) as r:
        assert r.status == 401
    assert [a.payload for a in sim.announcements] == [payload]
    async with session.get(f"{sim.base_url}/_sim/archive") as r:
        listed = await r.json()
    assert listed[0]["payload"] == payload
    assert listed[0]["status"] == 204


async def test_archive_fail_first(session: aiohttp.ClientSession, sim: SimServer) -> None:
    async with session.post(f"{sim.base_url}/_sim/archive/config", json={"fail_first": 2}) as r:
        assert r.status == 200
    async with session.post(f"{sim.base_url}/_sim/archive/config", json={"fail_first": -1}) as r:
        assert r.status == 400
    body = b'{"type": "recording.archived", "data": {}}'
    statuses = []
    for _ in range(3):
        async with session.post(
            sim.archive_url, data=body, headers=sign(ARCHIVE_SECRET, body, "msg_same")
        ) as r:
            statuses.append(r.status)
    assert statuses == [503, 503, 204]
    assert [(a.webhook_id, a.status) for a in sim.announcements] == [
        ("msg_same", 503),
        ("msg_same", 503),
        ("msg_same", 204),
    ]


# -- control, corpus, CLI ------------------------------------------------------------------


async def test_control_endpoints(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str]
) -> None:
    spec = {"id": "added", "segments": 2, "codecs": ["pcm"]}
    async with session.post(f"{sim.base_url}/_sim/recordings", json=spec) as r:
        assert (r.status, await r.json()) == (200, {"recordings": ["added"]})
    async with session.post(f"{sim.base_url}/_sim/recordings", json={"id": "x"}) as r:
        assert r.status == 400
        assert (await r.json())["error"] == "invalid_spec"
    _, body = await fetch(session, sim, "added", query("0,15", "pcm"), auth)
    assert len(body) == 480_000
    async with session.get(f"{sim.base_url}/_sim/stats") as r:
        stats = await r.json()
    assert stats["tokens_issued"] == 1
    added = stats["recordings"]["added"]
    assert (added["stream_requests"], added["metadata_requests"]) == (1, 0)
    assert added["bytes_served"] == 480_000
    assert added["requests"] == [
        {
            "offsets": [0, 15],
            "codec": "pcm",
            "range": None,
            "status": 200,
            "faults": [],
            "bytes": 480_000,
        }
    ]
    await sim.wait_for(lambda: sim.served("added").bytes_served == 480_000)
    with pytest.raises(TimeoutError):
        await sim.wait_for(lambda: False, timeout_s=0.05)


def test_default_corpus() -> None:
    corpus = default_corpus()
    assert len(corpus) == 12
    assert {len(c.codecs) for c in corpus} == {1, 2}
    assert {c.max_segments for c in corpus} == {3}
    assert (min(c.segments for c in corpus), max(c.segments for c in corpus)) == (1, 12)
    kinds = sorted(f.kind for c in corpus for f in c.faults)
    assert {"status", "stall", "truncate", "json200", "expire_token", "ignore_range"} <= set(kinds)
    assert any(c.segment_limit == 2 for c in corpus)


def test_load_corpus_formats_and_errors(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(
        '[[recording]]\nid = "r1"\nsegments = 2\n'
        'faults = [{ kind = "stall", after_bytes = 10, on = [1] }]\n'
    )
    (spec,) = load_corpus(toml)
    assert spec.faults == (FaultSpec("stall", on=(1,), after_bytes=10),)
    js = tmp_path / "c.json"
    js.write_text(json.dumps([spec.to_dict()]))
    assert load_corpus(js) == [spec]
    bad = [
        "[[recording]]\nid = 'r'\n",
        "[[recording]]\nid = 'bad id'\nsegments = 1\n",
        "[[recording]]\nid = 'r'\nsegments = 1\ncodecs = ['mp3']\n",
        "[[recording]]\nid = 'r'\nsegments = 1\nfaults = [{ kind = 'explode' }]\n",
        "[[recording]]\nid = 'r'\nsegments = 1\nfaults = [{ kind = 'stall', at_byte = 1 }]\n",
        "[[recording]]\nid = 'r'\nsegments = 1\nfaults = [{ kind = 'status', status = 500 }]\n",
        "[[recording]]\nid = 'r'\nsegments = 1\nfaults = [{ kind = 'rot', on = [1], times = 1 }]\n",
        "[[recording]]\nid = 'r'\nsegments = 1\nsegment_seconds = 20\n",
        "[[recording]]\nid = 'r'\nsegments = true\n",
        "[[recording]]\nid = 'r'\nsegments = 1\n[[recording]]\nid = 'r'\nsegments = 2\n",
        "not toml [",
    ]
    for text in bad:
        toml.write_text(text)
        with pytest.raises(ValueError) as err:
            load_corpus(toml)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError):
        load_corpus(tmp_path / "missing.toml")


def test_cli_bad_args() -> None:
    assert cli_main(["--listen", "nowhere"]) == 2
    assert cli_main(["--token-ttl", "-1"]) == 2
    assert cli_main(["--archive-secret", "whsec_"]) == 2
    assert cli_main(["--no-such-flag"]) == 2


async def test_cli_serves_until_sigterm(session: aiohttp.ClientSession) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "daemon")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cxstream.sim",
        "--listen",
        "127.0.0.1:0",
        "--client-id",
        "cli",
        "--client-secret",
        "s3cret",
        "--archive-secret",
        DEFAULT_ARCHIVE_SECRET,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(10):
            line = (await proc.stderr.readline()).decode()
        token_url = re.search(r"token_url=(\S+)", line)
        assert token_url, line
        async with session.post(
            token_url.group(1),
            data={"grant_type": "client_credentials"},
            headers=basic("cli", "s3cret"),
        ) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
