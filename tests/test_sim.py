"""The CXone simulator over real loopback sockets: API rows, faults, archive sink, CLI."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict
from standardwebhooks.webhooks import Webhook

from cxstream.formats import ogg
from cxstream.sim import (
    DEFAULT_ARCHIVE_SECRET,
    FaultSpec,
    RecordingSpec,
    SimServer,
    default_corpus,
    load_corpus,
)
from cxstream.sim.auth import basic_credentials
from cxstream.sim.cli import main as cli_main
from cxstream.sim.responses import ApiError
from cxstream.sim.validate import parse_range, validate_stream_query

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
ARCHIVE_SECRET = "whsec_" + base64.b64encode(b"archive-secret-for-tests").decode()
DIGEST_RE = re.compile(r"sha-256=:([A-Za-z0-9+/]+=*):")
REPO = Path(__file__).resolve().parents[1]
CONTENT_TYPES = {"opus": "audio/ogg; codecs=opus", "pcm": "audio/L16; rate=8000; channels=1"}

CORPUS = [
    RecordingSpec("rec-a", segments=5),
    RecordingSpec("rec-opus", segments=4, codecs=("opus",)),
    RecordingSpec("rec-seven", segments=7, max_segments=3),
]


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(
        CORPUS, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, archive_secret=ARCHIVE_SECRET
    ) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(client_id, secret)}


async def get_token(session: aiohttp.ClientSession, sim: SimServer) -> str:
    async with session.post(
        sim.token_url,
        data={"grant_type": "client_credentials"},
        headers=basic(CLIENT_ID, CLIENT_SECRET),
    ) as resp:
        assert resp.status == 200
        return str((await resp.json())["access_token"])


@pytest.fixture
async def auth(session: aiohttp.ClientSession, sim: SimServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {await get_token(session, sim)}"}


def stream_url(sim: SimServer, rid: str) -> str:
    return f"{sim.base_url}/api/v2/recordings/{rid}/stream"


def query(offsets: str, codec: str = "opus", max_duration: str = "180") -> dict[str, str]:
    return {"offsets": offsets, "codec": codec, "maxDuration": max_duration}


async def fetch(
    session: aiohttp.ClientSession,
    sim: SimServer,
    rid: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
) -> tuple[aiohttp.ClientResponse, bytes]:
    async with session.get(stream_url(sim, rid), params=params, headers=headers) as resp:
        return resp, await resp.read()


def digest_of(body: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def chain_serials(data: bytes) -> list[int]:
    """Check every page CRC and link framing of a chained Ogg file; the links' serials."""
    serials: list[int] = []
    open_serial: int | None = None
    for page, raw in ogg.iter_pages(data):
        assert ogg.page_crc(raw) == page.crc
        if page.bos:
            assert open_serial is None, "a link began before the previous one ended"
            open_serial = page.serial
            serials.append(page.serial)
        assert page.serial == open_serial
        if page.eos:
            open_serial = None
    assert open_serial is None, "the last link has no EOS page"
    return serials


def sign(secret: str, body: bytes, msg_id: str | None = None) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    now = datetime.now(tz=UTC)
    signature = Webhook(secret).sign(msg_id, now, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


# -- tokens ------------------------------------------------------------------


async def test_token_flow(session: aiohttp.ClientSession, sim: SimServer) -> None:
    form = {"grant_type": "client_credentials"}
    async with session.post(sim.token_url, data=form, headers=basic(CLIENT_ID, CLIENT_SECRET)) as r:
        assert r.status == 200
        body = await r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert len(body["access_token"]) >= 32
    for headers in (basic(CLIENT_ID, "wrong"), basic("someone", CLIENT_SECRET), {}):
        async with session.post(sim.token_url, data=form, headers=headers) as r:
            assert r.status == 401
            assert await r.json() == {"error": "invalid_client"}
    for garbage in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Bearer x"):
        async with session.post(sim.token_url, data=form, headers={"Authorization": garbage}) as r:
            assert r.status == 401
    async with session.post(
        sim.token_url, data={"grant_type": "password"}, headers=basic(CLIENT_ID, CLIENT_SECRET)
    ) as r:
        assert r.status == 400
        assert await r.json() == {"error": "unsupported_grant_type"}
    assert sim.state.tokens_issued == 1


async def test_bad_tokens_are_401(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str]
) -> None:
    url = f"{sim.base_url}/api/v2/recordings/rec-a"
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        async with session.get(url, headers=headers) as r:
            assert r.status == 401
            assert await r.json() == {"error": "invalid_token"}
    async with session.get(url, headers=auth) as r:
        assert r.status == 200
    sim.state.expire_tokens()
    async with session.get(url, headers=auth) as r:
        assert r.status == 401
    resp, _ = await fetch(session, sim, "rec-a", query("0"), auth)
    assert resp.status == 401


async def test_tokens_expire_after_ttl(session: aiohttp.ClientSession) -> None:
    async with SimServer(
        CORPUS, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token_ttl=0.2
    ) as s:
        async with session.post(
            s.token_url,
            data={"grant_type": "client_credentials"},
            headers=basic(CLIENT_ID, CLIENT_SECRET),
        ) as r:
            token = (await r.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{s.base_url}/api/v2/recordings/rec-a"
        async with session.get(url, headers=headers) as r:
            assert r.status == 200
        # Expiry runs on the monotonic clock, so this wait is exact, not a guess.
        await asyncio.sleep(0.25)
        async with session.get(url, headers=headers) as r:
            assert r.status == 401


# -- metadata ------------------------------------------------------------------


async def test_metadata_shape(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str]
) -> None:
    async with session.get(f"{sim.base_url}/api/v2/recordings/rec-a", headers=auth) as r:
        assert r.status == 200
        meta = await r.json()
    opus_bytes, opus_sha = sim.expected("rec-a", "opus")
    pcm_bytes, pcm_sha = sim.expected("rec-a", "pcm")
    assert meta == {
        "recordingId": "rec-a",
        "durationSeconds": 75,
        "maxDuration": 180,
        "maxSegmentsPerRequest": 3,
        "segments": [{"offset": o, "duration": 15} for o in (0, 15, 30, 45, 60)],
        "codecs": {
            "opus": {
                "contentType": "audio/ogg; codecs=opus",
                "bytes": opus_bytes,
                "sha256": opus_sha,
            },
            "pcm": {
                "contentType": "audio/L16; rate=8000; channels=1",
                "bytes": 1_200_000,
                "sha256": pcm_sha,
            },
        },
    }
    assert pcm_bytes == 1_200_000
    assert hashlib.sha256(sim.body("rec-a", "opus")).hexdigest() == opus_sha
    async with session.get(f"{sim.base_url}/api/v2/recordings/rec-opus", headers=auth) as r:
        assert list((await r.json())["codecs"]) == ["opus"]
    async with session.get(f"{sim.base_url}/api/v2/recordings/nope", headers=auth) as r:
        assert r.status == 404
        assert await r.json() == {"error": "recording_not_found"}
    assert sim.served("rec-a").metadata_requests == 1


# -- streaming ------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["opus", "pcm"])
async def test_full_stream_matches_metadata(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str], codec: str
) -> None:
    parts: list[bytes] = []
    for offsets in ("0,15,30", "45,60"):
        resp, body = await fetch(session, sim, "rec-a", query(offsets, codec), auth)
        assert resp.status == 200
        assert resp.headers["Transfer-Encoding"] == "chunked"
        assert "Content-Length" not in resp.headers
        assert resp.headers["Accept-Ranges"] == "bytes"
        assert resp.headers["Content-Type"] == CONTENT_TYPES[codec]
        assert resp.headers["Repr-Digest"] == digest_of(body)
        parts.append(body)
    whole = b"".join(parts)
    size, sha = sim.expected("rec-a", codec)
    assert (len(whole), hashlib.sha256(whole).hexdigest()) == (size, sha)
    stats = sim.served("rec-a")
    assert stats.stream_requests == 2
    assert stats.bytes_served == size
    assert [r.offsets for r in stats.requests] == [[0, 15, 30], [45, 60]]


async def test_opus_is_a_valid_chain(sim: SimServer) -> None:
    data = sim.body("rec-seven", "opus")
    serials = chain_serials(data)
    assert len(serials) == 7
    assert len(set(serials)) == 7
    # Segments 0 and 4 share a fixture but not a serial.
    assert sim.body("rec-seven", "opus", [0]) != sim.body("rec-seven", "opus", [60])
    # Any run of segments is byte-identical to the same run inside the whole recording.
    first = len(sim.body("rec-seven", "opus", [0]))
    middle = sim.body("rec-seven", "opus", [15, 30])
    assert data[first : first + len(middle)] == middle


async def test_shorter_segments_trim_opus_and_pcm(sim: SimServer) -> None:
    sim.add_recording({"id": "short", "segments": 2, "segment_seconds": 10})
    pcm = sim.body("short", "pcm")
    assert len(pcm) == 2 * 10 * 16000
    data = sim.body("short", "opus")
    chain_serials(data)
    ends = [p for p, _ in ogg.iter_pages(data) if p.eos]
    head = ogg.iter_pages(data)[0][1]
    pre_skip = struct.unpack_from("<H", head, ogg.iter_pages(data)[0][0].header_len + 10)[0]
    assert [p.granule for p in ends] == [pre_skip + 10 * 48000] * 2


ERROR_ROWS = [
    ("rec-a", query("[0,15,30]"), 400, {"error": "schema_validation"}),
    ("rec-a", query("0, 15"), 400, {"error": "schema_validation"}),
    ("rec-a", query("-15"), 400, {"error": "schema_validation"}),
    ("rec-a", query(""), 400, {"error": "schema_validation"}),
    ("rec-a", query("15,0"), 400, {"error": "schema_validation"}),
    ("rec-a", query("15,15"), 400, {"error": "schema_validation"}),
    ("rec-a", query("0,15,30,45"), 413, {"error": "offset_matrix_too_large", "maxSegments": 3}),
    ("rec-a", query("7"), 416, {"error": "offset_out_of_range"}),
    ("rec-a", query("75"), 416, {"error": "offset_out_of_range"}),
    ("rec-a", query("0", "mp3"), 400, {"error": "schema_validation"}),
    ("rec-a", {"offsets": "0", "maxDuration": "180"}, 400, {"error": "schema_validation"}),
    ("rec-opus", query("0", "pcm"), 406, {"error": "codec_unavailable", "available": ["opus"]}),
    ("rec-a", query("0", max_duration="abc"), 400, {"error": "schema_validation"}),
    ("rec-a", query("0", max_duration="15.0"), 400, {"error": "schema_validation"}),
    (
        "rec-a",
        query("0", max_duration="181"),
        400,
        {"error": "max_duration_exceeded", "limit": 180},
    ),
    ("rec-a", query("0,15,30", max_duration="44"), 400, {"error": "max_duration_exceeded"}),
    ("nope", query("0"), 404, {"error": "recording_not_found"}),
]


@pytest.mark.parametrize(("rid", "params", "status", "expect"), ERROR_ROWS)
async def test_error_rows(
    session: aiohttp.ClientSession,
    sim: SimServer,
    auth: dict[str, str],
    rid: str,
    params: dict[str, str],
    status: int,
    expect: dict[str, Any],
) -> None:
    resp, body = await fetch(session, sim, rid, params, auth)
    assert resp.status == status
    assert resp.content_type == "application/json"
    payload = json.loads(body)
    assert {k: payload[k] for k in expect} == expect


QUERY_TEXT = st.one_of(
    st.text(max_size=30),
    st.lists(st.integers(-20, 200), max_size=5).map(lambda xs: ",".join(map(str, xs))),
)


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(QUERY_TEXT, max_size=2),
    codec=st.lists(st.sampled_from(["opus", "pcm", "", "OPUS", "flac"]), max_size=2),
    max_duration=st.lists(QUERY_TEXT, max_size=2),
    range_header=st.one_of(st.none(), st.text(max_size=20)),
    auth_header=st.one_of(st.text(max_size=30), st.text(max_size=30).map("Basic {}".format)),
)
def test_any_input_is_answered_or_rejected_cleanly(
    offsets: list[str],
    codec: list[str],
    max_duration: list[str],
    range_header: str | None,
    auth_header: str,
) -> None:
    spec = RecordingSpec("h", segments=5, codecs=("opus",))
    pairs = [("offsets", o) for o in offsets] + [("codec", c) for c in codec]
    pairs += [("maxDuration", m) for m in max_duration]
    try:
        parsed = validate_stream_query(spec, MultiDict(pairs))
    except ApiError as err:
        assert 400 <= err.status < 500
    else:
        assert 1 <= len(parsed.indices) <= 3
        assert all(0 <= i < 5 for i in parsed.indices)
        assert list(parsed.offsets) == sorted(set(parsed.offsets))
    start = parse_range(range_header)
    assert start is None or start >= 0
    basic_credentials(auth_header)  # must not raise: garbage is simply "no credentials"


async def test_stream_without_token_is_401(session: aiohttp.ClientSession, sim: SimServer) -> None:
    resp, body = await fetch(session, sim, "rec-a", query("0"), {})
    assert (resp.status, json.loads(body)) == (401, {"error": "invalid_token"})
    resp, body = await fetch(session, sim, "nope", query("0"), {})
    assert resp.status == 401


async def test_range_resume(
    session: aiohttp.ClientSession, sim: SimServer, auth: dict[str, str]
) -> None:
    full = sim.body("rec-a", "pcm", [0, 15])
    for start in (0, 12345, len(full) - 1):
        headers = {**auth, "Range": f"bytes={start}-"}
        resp, body = await fetch(session, sim, "rec-a", query("0,15", "pcm"), headers)
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes {start}-{len(full) - 1}/{len(full)}"
        assert resp.headers["Repr-Digest"] == digest_of(full)
        assert resp.headers["Transfer-Encoding"] == "chunked"
        assert body == full[start:]
    headers = {**auth, "Range": f"bytes={len(full)}-"}
    resp, body = await fetch(session, sim, "rec-a", query("0,15", "pcm"), headers)
    assert (resp.status, json.loads(body)) == (416, {"error": "range_not_satisfiable"})
    for malformed in ("bytes=5-10", "items=3-", "bytes=-100", "bytes=a-"):
        headers = {**auth, "Range": malformed}
        resp, body = await fetch(session, sim, "rec-a", query("0,15", "pcm"), headers)
        assert resp.status == 200
        assert body == full


# -- faults ------------------------------------------------------------------


async def get_token_default(session: aiohttp.ClientSession, sim: SimServer) -> dict[str, str]:
    """A Bearer header from a simulator running with its default credentials."""
    async with session.post(
        sim.token_url,
        data={"grant_type": "client_credentials"},
        headers=basic(sim.state.client_id, sim.state.client_secret),
    ) as resp:
        return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}


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
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await resp.content.read(1)
            assert resp.connection is not None
            transport = resp.connection.transport
            assert transport is not None and not transport.is_closing()
            started = time.monotonic()
            await sim.stop()
            assert time.monotonic() - started < 1.5
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.content.read()
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
