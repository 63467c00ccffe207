"""The CXone client against a real loopback server: every answer of contract §1
classified (``_error_from``), and every control body bounded.

The server answers whatever the test row says; the client is the daemon's own
(``make_session``, ``TokenSource``, ``CxoneClient``), so identity encoding and
``auto_decompress=False`` are what runs in production.
"""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from cxstream.config import CxoneConfig, Secret
from cxstream.fetcher.cxone import CxoneClient
from cxstream.fetcher.errors import (
    CodecUnavailable,
    FetchError,
    PermanentError,
    RangeNotSatisfiable,
    SegmentLimit,
    Throttled,
)
from cxstream.fetcher.token import TokenSource, client_credentials
from cxstream.fetcher.transport import make_session
from cxstream.planner import Batch, Segment
from cxstream.sim.hostile import gzip_bomb, padded_json

BATCH = Batch((Segment(0, 15), Segment(15, 15)))
PAST = "Wed, 21 Oct 2015 07:28:00 GMT"
HTML = "<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"
MIB = 1024 * 1024


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # Pad a JSON body to this many bytes, written as it goes (chunked unless
    # content_length).
    padded_to: int | None = None
    content_length: bool = False


@dataclass
class Upstream:
    """What the fake CXone answers, and what it saw."""

    stream: Answer = field(default_factory=Answer)
    metadata: Answer = field(default_factory=Answer)
    token: Answer | None = None
    token_requests: int = 0
    requests: list[dict[str, str]] = field(default_factory=list)


UPSTREAM = web.AppKey("upstream", Upstream)


async def _answer(request: web.Request, answer: Answer) -> web.StreamResponse:
    if answer.padded_to is not None:
        return await padded_json(
            request,
            orjson.loads(answer.body),
            answer.padded_to,
            status=answer.status,
            content_length=answer.content_length,
            headers=answer.headers,
        )
    return web.Response(
        status=answer.status,
        body=answer.body,
        headers={"Content-Type": answer.content_type, **answer.headers},
    )


async def _token(request: web.Request) -> web.StreamResponse:
    up = request.app[UPSTREAM]
    up.token_requests += 1
    up.requests.append(dict(request.headers))
    if up.token is not None:
        return await _answer(request, up.token)
    body = {"access_token": f"tok-{up.token_requests}", "expires_in": 3600}
    return web.json_response(body)


async def _metadata(request: web.Request) -> web.StreamResponse:
    up = request.app[UPSTREAM]
    up.requests.append(dict(request.headers))
    return await _answer(request, up.metadata)


async def _stream(request: web.Request) -> web.StreamResponse:
    up = request.app[UPSTREAM]
    up.requests.append(dict(request.headers))
    return await _answer(request, up.stream)


@dataclass
class Rig:
    upstream: Upstream
    client: CxoneClient
    base: str


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    upstream = Upstream()
    app = web.Application()
    app[UPSTREAM] = upstream
    app.router.add_post("/token", _token)
    app.router.add_get("/api/v2/recordings/{id}", _metadata)
    app.router.add_get("/api/v2/recordings/{id}/stream", _stream)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    config = CxoneConfig(
        base_url=base,
        token_url=f"{base}/token",
        client_id="client",
        client_secret=Secret("client-secret-for-tests"),
        codecs=("opus", "pcm"),
    )
    session = make_session(pool_size=4, connect_timeout_s=5)
    try:
        yield Rig(
            upstream,
            CxoneClient(
                session, config, TokenSource(session, client_credentials(config), config.token_url)
            ),
            base,
        )
    finally:
        await session.close()
        await server.close()


def _json(status: int, payload: Any, **headers: str) -> Answer:
    return Answer(status=status, body=orjson.dumps(payload), headers=headers)


def _raw(status: int, body: bytes | str, content_type: str, **headers: str) -> Answer:
    data = body.encode() if isinstance(body, str) else body
    return Answer(status=status, body=data, content_type=content_type, headers=headers)


# (answer, class, code, status, retry_after, extra attribute checks)
ROWS: dict[str, tuple[Answer, type[FetchError], str, int, float | None, dict[str, Any]]] = {
    "400 schema_validation": (
        _json(400, {"error": "schema_validation", "parameter": "offsets"}),
        PermanentError, "schema_validation", 400, None, {},
    ),
    "400 max_duration_exceeded": (
        _json(400, {"error": "max_duration_exceeded", "limit": 180}),
        PermanentError, "max_duration_exceeded", 400, None, {},
    ),
    "404 recording_not_found": (
        _json(404, {"error": "recording_not_found"}),
        PermanentError, "recording_not_found", 404, None, {},
    ),
    "406 codec_unavailable": (
        _json(406, {"error": "codec_unavailable", "available": ["pcm"]}),
        CodecUnavailable, "codec_unavailable", 406, None, {},
    ),
    "413 with maxSegments": (
        _json(413, {"error": "offset_matrix_too_large", "maxSegments": 2}),
        SegmentLimit, "offset_matrix_too_large", 413, None, {"max_segments": 2},
    ),
    "413 with a boolean maxSegments": (
        _json(413, {"error": "offset_matrix_too_large", "maxSegments": True}),
        SegmentLimit, "offset_matrix_too_large", 413, None, {"max_segments": None},
    ),
    "413 with maxSegments 0": (
        _json(413, {"error": "offset_matrix_too_large", "maxSegments": 0}),
        SegmentLimit, "offset_matrix_too_large", 413, None, {"max_segments": None},
    ),
    "413 without maxSegments": (
        _json(413, {"error": "offset_matrix_too_large"}),
        SegmentLimit, "offset_matrix_too_large", 413, None, {"max_segments": None},
    ),
    "416 with Content-Range": (
        _json(416, {"error": "range_not_satisfiable"}, **{"Content-Range": "bytes */12345"}),
        RangeNotSatisfiable, "range_not_satisfiable", 416, None, {"length": 12345},
    ),
    "416 without Content-Range": (
        _json(416, {"error": "offset_out_of_range", "offset": 7}),
        RangeNotSatisfiable, "offset_out_of_range", 416, None, {"length": None},
    ),
    "429 with Retry-After": (
        _json(429, {"error": "rate_limited"}, **{"Retry-After": "3"}),
        Throttled, "rate_limited", 429, 3.0, {},
    ),
    "429 without Retry-After": (
        _json(429, {"error": "rate_limited"}),
        FetchError, "rate_limited", 429, None, {},
    ),
    "503 with Retry-After": (
        _json(503, {"error": "storage_timeout"}, **{"Retry-After": "2"}),
        Throttled, "storage_timeout", 503, 2.0, {},
    ),
    "503 with a past HTTP-date Retry-After": (
        _json(503, {"error": "storage_timeout"}, **{"Retry-After": PAST}),
        Throttled, "storage_timeout", 503, 0.0, {},
    ),
    "503 without Retry-After": (
        _json(503, {"error": "storage_timeout"}),
        FetchError, "storage_timeout", 503, None, {},
    ),
    "503 with a nonsense Retry-After": (
        _json(503, {"error": "storage_timeout"}, **{"Retry-After": "soon"}),
        FetchError, "storage_timeout", 503, None, {},
    ),
    "500 with a JSON code": (
        _json(500, {"error": "internal"}),
        FetchError, "internal", 500, None, {},
    ),
    "500 without a body": (
        _raw(500, b"", "application/json"),
        FetchError, "http_500", 500, None, {},
    ),
    "502 HTML page": (
        _raw(502, HTML, "text/html"),
        FetchError, "http_502", 502, None, {},
    ),
    "404 HTML page": (
        _raw(404, "<html>Not Found</html>", "text/html"),
        PermanentError, "http_404", 404, None, {},
    ),
    "503 empty body": (
        _raw(503, b"", "text/plain"),
        FetchError, "http_503", 503, None, {},
    ),
    "400 JSON array body": (
        _json(400, ["schema_validation"]),
        PermanentError, "http_400", 400, None, {},
    ),
    "400 JSON with a null error": (
        _json(400, {"error": None}),
        PermanentError, "http_400", 400, None, {},
    ),
    "408 is transient": (
        _json(408, {"error": "request_timeout"}),
        FetchError, "request_timeout", 408, None, {},
    ),
    "409 is permanent": (
        _json(409, {"error": "conflict"}),
        PermanentError, "conflict", 409, None, {},
    ),
    "a code longer than 64 characters is cut": (
        _json(500, {"error": "x" * 500}),
        FetchError, "x" * 64, 500, None, {},
    ),
    "404 error body of 8 MiB, chunked: the status decides": (
        Answer(status=404, body=b'{"error": "recording_not_found"}', padded_to=8 * MIB),
        PermanentError, "http_404", 404, None, {},
    ),
    "503 error body of 8 MiB with Content-Length": (
        Answer(
            status=503,
            body=b'{"error": "storage_timeout"}',
            padded_to=8 * MIB,
            content_length=True,
            headers={"Retry-After": "1"},
        ),
        Throttled, "http_503", 503, 1.0, {},
    ),
    "404 error body in gzip: ignored, never inflated": (
        _raw(404, gzip.compress(b'{"error":"recording_not_found"}'), "application/json",
             **{"Content-Encoding": "gzip"}),
        PermanentError, "http_404", 404, None, {},
    ),
    "JSON error with status 200": (
        _json(200, {"error": "storage_timeout"}),
        FetchError, "storage_timeout", 200, None, {},
    ),
    "JSON with status 200 and no code": (
        _json(200, {}),
        FetchError, "json_with_200", 200, None, {},
    ),
    "problem+json with status 200": (
        _raw(200, b'{"title": "oops"}', "application/problem+json"),
        FetchError, "json_with_200", 200, None, {},
    ),
    "JSON with 200 keeps its Retry-After": (
        _json(200, {"error": "storage_timeout"}, **{"Retry-After": "4"}),
        FetchError, "storage_timeout", 200, 4.0, {},
    ),
}  # fmt: skip


@pytest.mark.parametrize("row", list(ROWS), ids=list(ROWS))
async def test_stream_answers_are_classified(rig: Rig, row: str) -> None:
    answer, cls, code, status, retry_after, extra = ROWS[row]
    rig.upstream.stream = answer
    with pytest.raises(FetchError) as caught:
        async with rig.client.stream("rec-1", "opus", BATCH, 180, 0):
            pytest.fail("an error answer was yielded as audio")
    err = caught.value
    assert type(err) is cls, (type(err), err.text)
    assert (err.code, err.status) == (code, status)
    if retry_after is None:
        assert err.retry_after is None
    else:
        assert err.retry_after == pytest.approx(retry_after, abs=1.0)
    for name, value in extra.items():
        assert getattr(err, name) == value
    # Only a 401 ever asks for a second token.
    assert rig.upstream.token_requests == 1


async def test_401_refreshes_the_token_once_then_is_a_transient_error(rig: Rig) -> None:
    rig.upstream.stream = _json(401, {"error": "invalid_token"})
    with pytest.raises(FetchError) as caught:
        async with rig.client.stream("rec-1", "opus", BATCH, 180, 0):
            pass
    assert type(caught.value) is FetchError
    assert (caught.value.code, caught.value.status) == ("invalid_token", 401)
    assert rig.upstream.token_requests == 2
    stream_auth = [
        r["Authorization"] for r in rig.upstream.requests if "Bearer" in r.get("Authorization", "")
    ]
    assert stream_auth == ["Bearer tok-1", "Bearer tok-2"]


async def test_audio_is_yielded_and_every_request_asks_for_identity(rig: Rig) -> None:
    rig.upstream.stream = _raw(200, b"OggS" + bytes(100), "audio/ogg; codecs=opus")
    async with rig.client.stream("rec-1", "opus", BATCH, 180, 0) as resp:
        assert resp.status == 200
        assert await resp.read() == b"OggS" + bytes(100)
    assert rig.upstream.requests
    assert {r.get("Accept-Encoding") for r in rig.upstream.requests} == {"identity"}


# -- control bodies are bounded ------------------------------------------------------

METADATA = {
    "recordingId": "rec-1",
    "durationSeconds": 30,
    "maxDuration": 180,
    "maxSegmentsPerRequest": 3,
    "segments": [{"offset": 0, "duration": 15}, {"offset": 15, "duration": 15}],
    "codecs": {"opus": {"contentType": "audio/ogg", "bytes": 1000, "sha256": "ab" * 32}},
}


async def test_metadata_within_the_bound_parses(rig: Rig) -> None:
    rig.upstream.metadata = Answer(body=orjson.dumps(METADATA), padded_to=MIB - 1)
    meta = await rig.client.metadata("rec-1")
    assert [s.offset for s in meta.segments] == [0, 15]


@pytest.mark.parametrize("content_length", [False, True])
async def test_metadata_over_the_bound_is_refused(rig: Rig, content_length: bool) -> None:
    # Valid JSON a whole-body read would accept: only the bound refuses it.
    rig.upstream.metadata = Answer(
        body=orjson.dumps(METADATA), padded_to=MIB + 1, content_length=content_length
    )
    with pytest.raises(FetchError) as caught:
        await rig.client.metadata("rec-1")
    assert caught.value.code == "metadata_too_large"
    assert type(caught.value) is FetchError


async def test_metadata_with_too_many_segments_is_permanent(rig: Rig) -> None:
    many = {**METADATA, "segments": [{"offset": 15 * i, "duration": 15} for i in range(20_001)]}
    rig.upstream.metadata = _json(200, many)
    with pytest.raises(PermanentError) as caught:
        await rig.client.metadata("rec-1")
    assert caught.value.code == "metadata_too_many_segments"


async def test_gzip_metadata_is_refused_not_inflated(rig: Rig) -> None:
    rig.upstream.metadata = _raw(
        200,
        gzip.compress(orjson.dumps(METADATA)),
        "application/json",
        **{"Content-Encoding": "gzip"},
    )
    with pytest.raises(FetchError) as caught:
        await rig.client.metadata("rec-1")
    assert caught.value.code == "content_encoding_refused"


@pytest.mark.parametrize("content_length", [False, True])
async def test_a_huge_token_body_is_refused(rig: Rig, content_length: bool) -> None:
    token = orjson.dumps({"access_token": "tok-huge", "expires_in": 3600})
    rig.upstream.token = Answer(body=token, padded_to=16 * MIB, content_length=content_length)
    with pytest.raises(FetchError) as caught:
        await rig.client.metadata("rec-1")
    assert caught.value.code == "token_too_large"
    # Nothing was asked of the API without a token.
    assert rig.upstream.token_requests == 1 and len(rig.upstream.requests) == 1


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (_raw(200, b"not json", "application/json"), "token_malformed"),
        (_json(200, ["tok"]), "token_malformed"),
        (_json(200, {"token_type": "Bearer"}), "token_malformed"),
        (_json(500, {"error": "down"}), "token_http_500"),
        (
            _raw(200, gzip.compress(b'{"access_token": "t"}'), "application/json",
                 **{"Content-Encoding": "gzip"}),
            "content_encoding_refused",
        ),
    ],
)  # fmt: skip
async def test_bad_token_answers(rig: Rig, answer: Answer, code: str) -> None:
    rig.upstream.token = answer
    with pytest.raises(FetchError) as caught:
        await rig.client.metadata("rec-1")
    assert caught.value.code == code


async def test_the_session_never_inflates_a_body(rig: Rig) -> None:
    # Whatever reads a coded body through the daemon's session gets the bytes on
    # the wire: a bomb stays small even where no check refuses it first.
    bomb = gzip_bomb(64 * MIB)
    rig.upstream.stream = _raw(200, bomb, "audio/ogg", **{"Content-Encoding": "gzip"})
    session = make_session(pool_size=1, connect_timeout_s=5)
    try:
        async with session.get(f"{rig.base}/api/v2/recordings/r/stream") as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            assert await resp.read() == bomb
    finally:
        await session.close()
    assert len(bomb) < 128 * 1024
