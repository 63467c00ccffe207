"""The simulator's hostile switches, seen from a plain client: what each one serves."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from cxstream.sim import SimServer
from cxstream.sim.server import recording_metadata
from cxstream.sim.spec import recording_from_dict

MIB = 1024 * 1024


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(client_id="c", client_secret="s") as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # Never inflate: the test looks at the bytes on the wire.
    async with aiohttp.ClientSession(auto_decompress=False) as client:
        yield client


async def token(session: aiohttp.ClientSession, sim: SimServer) -> str:
    async with session.post(
        sim.token_url,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": aiohttp.encode_basic_auth("c", "s")},
    ) as resp:
        assert resp.status == 200
        return str(json.loads(await resp.read())["access_token"])


async def get(
    session: aiohttp.ClientSession, sim: SimServer, rid: str, suffix: str = "/stream", **kw: Any
) -> tuple[aiohttp.ClientResponse, bytes]:
    headers = {"Authorization": f"Bearer {await token(session, sim)}", **kw.pop("headers", {})}
    params = {"offsets": "0,15", "codec": "pcm", "maxDuration": "180"} if suffix else None
    url = f"{sim.base_url}/api/v2/recordings/{rid}{suffix}"
    async with session.get(url, params=params, headers=headers) as resp:
        return resp, await resp.read()


def digest(body: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def add(sim: SimServer, rid: str, *faults: dict[str, Any], segments: int = 2) -> bytes:
    sim.add_recording({"id": rid, "segments": segments, "faults": list(faults)})
    return sim.body(rid, "pcm")


async def test_endless_with_a_limit_sends_the_body_then_more_of_it(
    session: aiohttp.ClientSession, sim: SimServer
) -> None:
    body = add(sim, "e", {"kind": "endless", "max_bytes": 3 * MIB})
    resp, got = await get(session, sim, "e")
    assert resp.status == 200 and "Content-Length" not in resp.headers
    assert resp.headers["Repr-Digest"] == digest(body)
    assert len(got) == 3 * MIB
    assert got[: len(body)] == body
    assert got[len(body) : 2 * len(body)] == body
    stats = sim.served("e")
    assert stats.bytes_served == stats.requests[0].bytes == 3 * MIB
    assert stats.requests[0].faults == ["endless"]


async def test_endless_without_a_limit_ends_only_when_the_client_leaves(
    session: aiohttp.ClientSession, sim: SimServer
) -> None:
    add(sim, "forever", {"kind": "endless"})
    stats = sim.served("forever")
    headers = {"Authorization": f"Bearer {await token(session, sim)}"}
    url = f"{sim.base_url}/api/v2/recordings/forever/stream"
    params = {"offsets": "0,15", "codec": "pcm", "maxDuration": "180"}
    resp = await session.get(url, params=params, headers=headers)
    received = 0
    while received < 8 * MIB:
        received += len(await resp.content.read(MIB))
    resp.close()
    await sim.wait_for(lambda: stats.active_streams == 0)
    assert stats.bytes_served >= 8 * MIB


@pytest.mark.parametrize("content_length", [False, True])
async def test_junk_tail_is_more_bytes_under_the_true_digest(
    session: aiohttp.ClientSession, sim: SimServer, content_length: bool
) -> None:
    fault = {"kind": "junk_tail", "extra_bytes": 5000, "content_length": content_length}
    body = add(sim, "junk", fault)
    resp, got = await get(session, sim, "junk")
    assert len(got) == len(body) + 5000 and got.startswith(body)
    assert resp.headers["Repr-Digest"] == digest(body)
    if content_length:
        assert resp.headers["Content-Length"] == str(len(body) + 5000)
        assert "Transfer-Encoding" not in resp.headers
    else:
        assert resp.headers["Transfer-Encoding"] == "chunked"
    # A resume is honest about what it serves too.
    resp, tail = await get(session, sim, "junk", headers={"Range": f"bytes={len(body)}-"})
    assert resp.status == 206 and len(tail) == 5000
    assert (
        resp.headers["Content-Range"] == f"bytes {len(body)}-{len(body) + 4999}/{len(body) + 5000}"
    )


async def test_gzip_is_the_body_compressed_unasked(
    session: aiohttp.ClientSession, sim: SimServer
) -> None:
    body = add(sim, "gz", {"kind": "gzip", "times": 1})
    resp, got = await get(session, sim, "gz", headers={"Range": "bytes=10-"})
    assert resp.status == 200  # a coded body is never served in ranges
    assert resp.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(got) == body
    resp, got = await get(session, sim, "gz")
    assert "Content-Encoding" not in resp.headers and got == body


async def test_gzip_bomb_is_small_on_the_wire_and_huge_inflated(
    session: aiohttp.ClientSession, sim: SimServer
) -> None:
    add(sim, "bomb", {"kind": "gzip_bomb", "inflated_bytes": 128 * MIB})
    resp, got = await get(session, sim, "bomb")
    assert resp.headers["Content-Encoding"] == "gzip"
    assert len(got) < 256 * 1024
    assert sim.served("bomb").bytes_served == len(got)
    inflate = zlib.decompressobj(31)
    total, data = 0, got
    while data:
        total += len(inflate.decompress(data, MIB))
        data = inflate.unconsumed_tail
    assert total == 128 * MIB


@pytest.mark.parametrize("content_length", [False, True])
async def test_huge_metadata_is_valid_json_of_the_asked_size(
    session: aiohttp.ClientSession, sim: SimServer, content_length: bool
) -> None:
    fault = {"kind": "huge_metadata", "size_bytes": 3 * MIB, "content_length": content_length}
    add(sim, "fat", fault)
    resp, got = await get(session, sim, "fat", suffix="")
    assert len(got) == 3 * MIB
    assert (resp.headers.get("Content-Length") is not None) is content_length
    meta = json.loads(got)
    assert meta == recording_metadata(sim.state, sim.state.recordings["fat"])
    stats = sim.served("fat")
    assert (stats.metadata_requests, stats.metadata_bytes_served) == (1, 3 * MIB)


async def test_many_segments_lists_that_many(
    session: aiohttp.ClientSession, sim: SimServer
) -> None:
    add(sim, "many", {"kind": "many_segments", "count": 100_000, "times": 1})
    _, got = await get(session, sim, "many", suffix="")
    meta = json.loads(got)
    assert len(meta["segments"]) == 100_000
    assert meta["segments"][-1] == {"offset": 99_999 * 15, "duration": 15}
    assert meta["durationSeconds"] == 100_000 * 15
    _, got = await get(session, sim, "many", suffix="")
    assert len(json.loads(got)["segments"]) == 2


@pytest.mark.parametrize(
    ("status", "code"),
    [(503, "storage_timeout"), (404, "recording_not_found"), (500, "server_error")],
)
async def test_huge_error_is_a_padded_error_json(
    session: aiohttp.ClientSession, sim: SimServer, status: int, code: str
) -> None:
    add(sim, "err", {"kind": "huge_error", "status": status, "size_bytes": 2 * MIB})
    resp, got = await get(session, sim, "err")
    assert resp.status == status and "Retry-After" not in resp.headers
    assert len(got) == 2 * MIB
    assert json.loads(got) == {"error": code}
    assert sim.served("err").requests[0].bytes == 2 * MIB


@pytest.mark.parametrize("content_length", [False, True])
async def test_huge_token_answers_the_next_refresh_with_a_huge_valid_token(
    session: aiohttp.ClientSession, sim: SimServer, content_length: bool
) -> None:
    fault = {
        "kind": "huge_token",
        "on": [1],
        "size_bytes": 2 * MIB,
        "content_length": content_length,
    }
    add(sim, "tok", fault)
    resp, got = await get(session, sim, "tok")
    assert (resp.status, json.loads(got)) == (401, {"error": "invalid_token"})
    before = sim.state.token_bytes_served
    huge = await token(session, sim)  # the refresh: 2 MiB, and a real token inside
    assert sim.state.token_bytes_served - before == 2 * MIB
    resp, _ = await get(session, sim, "tok")
    assert resp.status == 200
    async with session.get(
        f"{sim.base_url}/api/v2/recordings/tok",
        headers={"Authorization": f"Bearer {huge}"},
    ) as r:
        assert r.status == 200
    snapshot = sim.state.snapshot()
    assert snapshot["token_requests"] == sim.state.token_requests >= 3


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"kind": "huge_error", "status": 200}, "status must be in 400..599"),
        (
            {"kind": "huge_metadata", "content_length": "yes"},
            "content_length must be true or false",
        ),
        ({"kind": "gzip_bomb", "inflated_bytes": 0}, "inflated_bytes must be in"),
        ({"kind": "many_segments", "count": 10**9}, "count must be in"),
        ({"kind": "endless", "max_bytes": -1}, "max_bytes must be >= 0"),
        ({"kind": "gzip", "size_bytes": 1}, "unknown key 'size_bytes'"),
        ({"kind": "status", "status": 500}, "status must be 429 or 503"),
    ],
)
def test_hostile_switches_are_validated(fault: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        recording_from_dict({"id": "r", "segments": 1, "faults": [fault]})


def test_hostile_switches_round_trip() -> None:
    faults = [
        {"kind": "endless", "max_bytes": 10, "on": [1]},
        {"kind": "junk_tail", "extra_bytes": 7, "content_length": True},
        {"kind": "gzip", "times": 2},
        {"kind": "gzip_bomb", "inflated_bytes": 1024},
        {"kind": "huge_metadata", "size_bytes": 5, "content_length": False},
        {"kind": "many_segments", "count": 3},
        {"kind": "huge_error", "status": 502, "size_bytes": 9, "content_length": True},
        {"kind": "huge_token", "size_bytes": 11, "content_length": False},
    ]
    spec = recording_from_dict({"id": "r", "segments": 1, "faults": faults})
    assert recording_from_dict(spec.to_dict()) == spec
    assert [f.for_metadata for f in spec.faults] == [False] * 4 + [True, True] + [False] * 2
