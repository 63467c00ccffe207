"""Each fault the simulator can make, as a client sees it on the wire."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from cxstream.formats import ogg
from cxstream.sim import (
    FaultSpec,
    RecordingSpec,
    SimServer,
)
from tests.sim.client import (
    DIGEST_RE,
    digest_of,
    fetch,
    get_token,
    get_token_default,
    query,
    stream_url,
)


async def test_stall_keeps_connection_open_until_shutdown(session: aiohttp.ClientSession) -> None:
    stall = RecordingSpec("stall", segments=3, faults=(FaultSpec("stall", after_bytes=30000),))
    sim = SimServer([stall])
    await sim.start()
    try:
        token = await get_token_default(session, sim)
        async with session.get(
            stream_url(sim, "stall"), params=query("0,15,30"), headers=token
        ) as resp:
            assert resp.status == 200
            async with asyncio.timeout(5):
                received = await resp.content.readexactly(30000)
            assert received == sim.body("stall", "opus", [0, 15, 30])[:30000]
            # The handler is parked in its stall: sent all it will send, still open.
            served = sim.served("stall")
            await sim.wait_for(lambda: served.active_streams == 1 and served.bytes_served == 30000)
            assert resp.connection is not None
            transport = resp.connection.transport
            assert transport is not None and not transport.is_closing()
            started = time.monotonic()
            await sim.stop()
            assert time.monotonic() - started < 1.5
            # Read to the end the shutdown brings: not one byte came after the stall.
            after = b""
            with pytest.raises(aiohttp.ClientPayloadError):
                while chunk := await resp.content.read(65536):
                    after += chunk
            assert after == b""
    finally:
        await sim.stop()
    assert sim.served("stall").bytes_served == 30000


async def test_stalled_handler_ends_when_client_leaves(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str]
) -> None:
    sim.add_recording(
        {"id": "stall", "segments": 2, "faults": [{"kind": "stall", "after_bytes": 100}]}
    )
    stats = sim.served("stall")
    resp = await session.get(stream_url(sim, "stall"), params=query("0,15"), headers=auth)
    await sim.wait_for(lambda: stats.active_streams == 1 and stats.bytes_served == 100)
    resp.close()
    await sim.wait_for(lambda: stats.active_streams == 0)


# Before the first whole chunk, mid-body, and past the end (only the terminator is lost).
@pytest.mark.parametrize("after_bytes", [1000, 40000, 10**9])
async def test_truncate_breaks_chunked_framing(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str], after_bytes: int
) -> None:
    sim.add_recording(
        {"id": "trunc", "segments": 3, "faults": [{"kind": "truncate", "after_bytes": after_bytes}]}
    )
    received = b""
    async with session.get(stream_url(sim, "trunc"), params=query("0,15,30"), headers=auth) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            while chunk := await r.content.read(65536):
                received += chunk
    assert received == sim.body("trunc", "opus", [0, 15, 30])[:after_bytes]


async def test_bad_digest_and_corrupt(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str]
) -> None:
    sim.add_recording({"id": "bad", "segments": 2, "faults": [{"kind": "bad_digest"}]})
    sim.add_recording(
        {"id": "corrupt", "segments": 2, "faults": [{"kind": "corrupt", "at_byte": 5000}]}
    )
    resp, body = await fetch(session, sim, "bad", query("0,15"), auth)
    assert body == sim.body("bad", "opus", [0, 15])
    assert DIGEST_RE.fullmatch(resp.headers["Repr-Digest"])
    assert resp.headers["Repr-Digest"] != digest_of(body)

    truth = sim.body("corrupt", "pcm", [0, 15])
    resp, body = await fetch(session, sim, "corrupt", query("0,15", "pcm"), auth)
    assert resp.headers["Repr-Digest"] == digest_of(truth) != digest_of(body)
    assert [i for i in range(len(truth)) if truth[i] != body[i]] == [5000]


@pytest.mark.parametrize("codec", ["opus", "pcm"])
async def test_rot_lies_consistently(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str], codec: str
) -> None:
    # Byte 20 is inside the first page header; for Opus the flip moves into a page body.
    sim.add_recording({"id": "rot", "segments": 2, "faults": [{"kind": "rot", "at_byte": 20}]})
    truth = sim.body("rot", codec, [0, 15])
    resp, body = await fetch(session, sim, "rot", query("0,15", codec), auth)
    assert resp.headers["Repr-Digest"] == digest_of(body)
    diffs = [i for i in range(len(truth)) if truth[i] != body[i]]
    assert len(diffs) == 1
    if codec == "pcm":
        assert diffs == [20]
    else:
        pages = ogg.iter_pages(body)
        assert sum(ogg.page_crc(raw) != page.crc for page, raw in pages) == 1
        assert diffs[0] >= pages[0][0].header_len


async def test_missing_eos(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str]
) -> None:
    sim.add_recording({"id": "noeos", "segments": 2, "faults": [{"kind": "missing_eos"}]})
    resp, body = await fetch(session, sim, "noeos", query("0,15"), auth)
    assert resp.headers["Repr-Digest"] == digest_of(body)
    pages = ogg.iter_pages(body)
    assert all(ogg.page_crc(raw) == page.crc for page, raw in pages)
    assert not any(page.eos for page, _ in pages)
    assert sum(page.bos for page, _ in pages) == 2
    assert len(body) == len(sim.body("noeos", "opus", [0, 15]))


async def test_ignore_range_answers_full_200(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str]
) -> None:
    sim.add_recording({"id": "norange", "segments": 2, "faults": [{"kind": "ignore_range"}]})
    resp, body = await fetch(
        session, sim, "norange", query("0,15"), {**auth, "Range": "bytes=100-"}
    )
    assert resp.status == 200
    assert "Content-Range" not in resp.headers
    assert body == sim.body("norange", "opus", [0, 15])


async def test_trickle_is_slow_but_complete(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str]
) -> None:
    rate = 100_000
    sim.add_recording(
        {"id": "slow", "segments": 1, "faults": [{"kind": "trickle", "bytes_per_second": rate}]}
    )
    started = time.monotonic()
    resp, body = await fetch(session, sim, "slow", query("0"), auth)
    elapsed = time.monotonic() - started
    assert body == sim.body("slow", "opus")
    assert resp.headers["Repr-Digest"] == digest_of(body)
    assert elapsed >= 0.8 * len(body) / rate


@pytest.mark.parametrize(("status", "code"), [(429, "rate_limited"), (503, "storage_timeout")])
async def test_status_burst_then_success(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str], status: int, code: str
) -> None:
    fault = {"kind": "status", "status": status, "retry_after": 2, "times": 2}
    sim.add_recording({"id": "busy", "segments": 1, "faults": [fault]})
    for _ in range(2):
        resp, body = await fetch(session, sim, "busy", query("0"), auth)
        assert (resp.status, json.loads(body)) == (status, {"error": code})
        assert resp.headers["Retry-After"] == "2"
    resp, body = await fetch(session, sim, "busy", query("0"), auth)
    assert resp.status == 200
    assert [r.status for r in sim.served("busy").requests] == [status, status, 200]


async def test_json200(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str]
) -> None:
    sim.add_recording({"id": "j", "segments": 1, "faults": [{"kind": "json200", "on": [1]}]})
    resp, body = await fetch(session, sim, "j", query("0"), auth)
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert json.loads(body) == {"error": "storage_timeout"}
    resp, body = await fetch(session, sim, "j", query("0"), auth)
    assert resp.content_type == "audio/ogg"
    assert body == sim.body("j", "opus")


async def test_expire_token_forces_refresh(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str]
) -> None:
    sim.add_recording({"id": "exp", "segments": 2, "faults": [{"kind": "expire_token", "on": [2]}]})
    resp, _ = await fetch(session, sim, "exp", query("0"), auth)
    assert resp.status == 200
    resp, body = await fetch(session, sim, "exp", query("15"), auth)
    assert (resp.status, json.loads(body)) == (401, {"error": "invalid_token"})
    resp, _ = await fetch(session, sim, "exp", query("15"), auth)
    assert resp.status == 401, "the revoked token must stay revoked"
    fresh = {"Authorization": f"Bearer {await get_token(session, sim)}"}
    resp, _ = await fetch(session, sim, "exp", query("15"), fresh)
    assert resp.status == 200


async def test_fault_selection_counts_every_request(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str]
) -> None:
    sim.add_recording({"id": "sel", "segments": 2, "faults": [{"kind": "json200", "on": [1, 3]}]})
    statuses = []
    for params in (query("0"), query("[0]"), query("0"), query("0")):
        resp, _ = await fetch(session, sim, "sel", params, auth)
        statuses.append((resp.status, resp.content_type))
    assert statuses == [
        (200, "application/json"),
        (400, "application/json"),
        (200, "application/json"),
        (200, "audio/ogg"),
    ]
    logs = sim.served("sel").requests
    assert [r.faults for r in logs] == [["json200"], [], ["json200"], []]
    assert logs[1].offsets == "[0]"


async def test_metadata_status_and_enforced_limit(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str]
) -> None:
    sim.add_recording(
        {
            "id": "strict",
            "segments": 4,
            "enforce_max_segments": 2,
            "faults": [{"kind": "metadata_status", "status": 503, "retry_after": 3, "times": 1}],
        }
    )
    url = f"{sim.base_url}/api/v2/recordings/strict"
    async with session.get(url, headers=auth) as r:
        assert (r.status, r.headers["Retry-After"]) == (503, "3")
        assert await r.json() == {"error": "storage_timeout"}
    async with session.get(url, headers=auth) as r:
        assert (await r.json())["maxSegmentsPerRequest"] == 3
    resp, body = await fetch(session, sim, "strict", query("0,15,30"), auth)
    assert resp.status == 413
    assert json.loads(body) == {"error": "offset_matrix_too_large", "maxSegments": 2}
    resp, _ = await fetch(session, sim, "strict", query("0,15"), auth)
    assert resp.status == 200
