"""The simulator's CXone API (contract §1) over real loopback sockets: tokens,
metadata, streams, every error row, Range."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from cxstream.formats import ogg
from cxstream.sim import (
    RecordingSpec,
    SimServer,
)
from cxstream.sim.auth import basic_credentials
from cxstream.sim.responses import ApiError
from cxstream.sim.validate import parse_range, validate_stream_query
from tests.sim.client import (
    CLIENT_ID,
    CLIENT_SECRET,
    CONTENT_TYPES,
    CORPUS,
    basic,
    chain_serials,
    digest_of,
    fetch,
    query,
)

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
    # A body that is not a UTF-8 urlencoded form is a 400, not a 500.
    for body, content_type in [
        (b"grant_type=\xff", "application/x-www-form-urlencoded"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
    ]:
        headers = {**basic(CLIENT_ID, CLIENT_SECRET), "Content-Type": content_type}
        async with session.post(sim.token_url, data=body, headers=headers) as r:
            assert r.status == 400
            assert await r.json() == {"error": "invalid_request"}
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
