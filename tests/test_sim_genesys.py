"""The Genesys Cloud simulator over real loopback sockets: login, the Recording
API (transcoding, file states, formats, faults) and media downloads."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from standardwebhooks.webhooks import Webhook

from cxstream.formats.ogg import OggError, check_opus_file
from cxstream.formats.wav import check_wav_file
from cxstream.sim.corpus import default_genesys, load_genesys_corpus
from cxstream.sim.platform_servers import GenesysSim
from cxstream.sim.platform_spec import GenesysSettings
from cxstream.sim.server import DEFAULT_ARCHIVE_SECRET
from tests.simclient import basic, bearer, download, genesys_token, recordings

CONV = "c0ffee00-0000-4000-8000-000000000001"
CONVERSATIONS: list[dict[str, Any]] = [
    {
        "id": CONV,
        "recording": [
            {"id": "rec-a", "segments": 2},
            {"id": "rec-b", "segments": 1, "segment_seconds": 10, "formats": ["WAV"]},
        ],
    }
]
RECORDING_FIELDS = {
    "id",
    "conversationId",
    "sessionId",
    "startTime",
    "endTime",
    "media",
    "fileState",
    "archiveDate",
    "deleteDate",
    "selfUri",
}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def sim() -> AsyncIterator[GenesysSim]:
    async with GenesysSim(CONVERSATIONS) as server:
        yield server


@pytest.fixture
async def token(session: aiohttp.ClientSession, sim: GenesysSim) -> str:
    return await genesys_token(session, sim)


def error_shape(body: Any, status: int, code: str) -> None:
    assert body["status"] == status and body["code"] == code and body["message"]


def when(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


# -- login --------------------------------------------------------------------------


async def test_login_client_credentials(session: aiohttp.ClientSession, sim: GenesysSim) -> None:
    async with session.post(
        sim.token_url,
        data={"grant_type": "client_credentials"},
        headers=basic(sim.client_id, sim.client_secret),
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 86400
    status, _, _ = await recordings(session, sim, body["access_token"], CONV, formatId="WAV")
    assert status == 200
    assert sim.state.token_requests == {"client_credentials": 1}


async def test_login_refusals(session: aiohttp.ClientSession, sim: GenesysSim) -> None:
    grant = {"grant_type": "client_credentials"}
    for headers, form in [
        (basic(sim.client_id, "wrong"), grant),
        (basic("wrong", sim.client_secret), grant),
        ({}, grant),
        ({}, grant | {"client_id": sim.client_id, "client_secret": sim.client_secret}),
    ]:
        async with session.post(sim.token_url, data=form, headers=headers) as resp:
            assert resp.status == 401
            body = await resp.json()
            assert body["error"] == "invalid_client"
            assert "wrong" not in json.dumps(body)
    for form, error in [({}, "invalid_request"), ({"grant_type": "password"}, "unsupported")]:
        async with session.post(
            sim.token_url, data=form, headers=basic(sim.client_id, sim.client_secret)
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"].startswith(error)
    assert sim.state.tokens_issued == 0


async def test_login_and_api_are_different_hosts(
    session: aiohttp.ClientSession, sim: GenesysSim, token: str
) -> None:
    assert sim.login_url != sim.api_url
    async with session.post(sim.api_url + "/oauth/token") as resp:
        assert resp.status in (404, 405)
    path = f"/api/v2/conversations/{CONV}/recordings"
    async with session.get(sim.login_url + path, headers=bearer(token)) as resp:
        assert resp.status == 404


async def test_api_needs_a_valid_token(
    session: aiohttp.ClientSession, sim: GenesysSim, token: str
) -> None:
    async with session.get(f"{sim.api_url}/api/v2/conversations/{CONV}/recordings") as resp:
        assert resp.status == 401
        error_shape(await resp.json(), 401, "bad.credentials")
    sim.expire_tokens()
    status, body, _ = await recordings(session, sim, token, CONV)
    assert status == 401
    error_shape(body, 401, "bad.credentials")


# -- recordings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "check", "content_type"),
    [("OGG_OPUS", check_opus_file, "audio/ogg"), ("WAV", check_wav_file, "audio/wav")],
)
async def test_recording_body_and_media(
    session: aiohttp.ClientSession,
    sim: GenesysSim,
    token: str,
    tmp_path: Path,
    fmt: str,
    check: Any,
    content_type: str,
) -> None:
    status, body, _ = await recordings(session, sim, token, CONV, "rec-a", formatId=fmt)
    assert status == 200
    assert set(body) >= RECORDING_FIELDS
    assert (body["id"], body["conversationId"], body["fileState"]) == ("rec-a", CONV, "AVAILABLE")
    assert body["media"] == "audio"
    assert when(body["endTime"]) - when(body["startTime"]) == 30
    assert when(body["archiveDate"]) > time.time() and when(body["deleteDate"]) > time.time()
    assert body["outputDurationMs"] == 30_000
    assert body["outputSizeInBytes"] == len(sim.body("rec-a", fmt))
    assert list(body["mediaUris"]) == ["S"]
    url = body["mediaUris"]["S"]["mediaUri"]
    status, data, headers = await download(session, url)
    assert status == 200 and data == sim.body("rec-a", fmt)
    assert headers["Content-Type"] == content_type
    path = tmp_path / "file"
    path.write_bytes(data)
    info = check(path)
    assert info.size == body["outputSizeInBytes"]
    assert info.duration_s * 1000 == body["outputDurationMs"]


async def test_list_and_not_found(
    session: aiohttp.ClientSession, sim: GenesysSim, token: str
) -> None:
    status, body, _ = await recordings(session, sim, token, CONV, formatId="WAV", maxWaitMs="5000")
    assert status == 200
    assert [r["id"] for r in body] == ["rec-a", "rec-b"]
    assert all("mediaUri" in r["mediaUris"]["S"] for r in body)
    # Recordings of one conversation follow each other.
    assert body[0]["endTime"] == body[1]["startTime"]
    status, body, _ = await recordings(session, sim, token, CONV, "nope", formatId="WAV")
    assert status == 404
    error_shape(body, 404, "not.found")
    status, body, _ = await recordings(session, sim, token, "no-such-conversation")
    assert status == 404
    error_shape(body, 404, "not.found")


async def test_format_choice(session: aiohttp.ClientSession, sim: GenesysSim, token: str) -> None:
    # rec-b is only available as WAV: OGG_OPUS is an error for it, not a wait.
    status, body, _ = await recordings(session, sim, token, CONV, "rec-b", formatId="OGG_OPUS")
    assert status == 400
    error_shape(body, 400, "recording.format.unavailable")
    status, body, _ = await recordings(session, sim, token, CONV, formatId="OGG_OPUS")
    assert status == 200
    assert "mediaUris" in body[0] and "mediaUris" not in body[1]
    assert body[1]["recordingErrorStatus"] == "FORMAT_UNAVAILABLE"
    # The documented default (WEBM) is not one the simulator makes.
    status, body, _ = await recordings(session, sim, token, CONV, "rec-a")
    assert status == 400
    error_shape(body, 400, "recording.format.unavailable")
    status, body, _ = await recordings(session, sim, token, CONV, "rec-a", formatId="NONE")
    assert status == 200 and "mediaUris" not in body
    for params in (
        {"formatId": "FLAC"},
        {"formatId": "WAV", "maxWaitMs": "soon"},
        {"formatId": "WAV", "maxWaitMs": "²"},
    ):
        status, body, _ = await recordings(session, sim, token, CONV, "rec-a", **params)
        assert status == 400
        error_shape(body, 400, "bad.request")


@pytest.mark.parametrize(("answer", "status"), [("202", 202), ("empty", 200)])
async def test_transcoding_then_ready(
    session: aiohttp.ClientSession, answer: str, status: int
) -> None:
    rec = {"id": "slow", "transcode_s": 0.4, "transcoding_answer": answer}
    async with GenesysSim([{"id": "c", "recording": [rec]}]) as sim:
        token = await genesys_token(session, sim)
        got, body, _ = await recordings(session, sim, token, "c", "slow", formatId="OGG_OPUS")
        started = time.monotonic()  # that first request started the transcode before this
        assert got == status
        assert "mediaUris" not in body and body["outputSizeInBytes"] == 0
        assert 0 < body["estimatedTranscodeTimeMs"] <= 400
        got, listed, _ = await recordings(session, sim, token, "c", formatId="OGG_OPUS")
        assert got == status and "mediaUris" not in listed[0]
        # WAV transcodes on its own clock.
        got, _, _ = await recordings(session, sim, token, "c", "slow", formatId="WAV")
        assert got == status
        # What is tested is the clock: wait out the transcode.
        await asyncio.sleep(max(0.0, started + 0.4 - time.monotonic()))
        got, body, _ = await recordings(session, sim, token, "c", "slow", formatId="OGG_OPUS")
        assert got == 200 and body["outputSizeInBytes"] == len(sim.body("slow"))
        assert body["mediaUris"]["S"]["mediaUri"].startswith(sim.media_url)


async def test_max_wait_holds_the_request(session: aiohttp.ClientSession) -> None:
    recs = [{"id": "r1", "transcode_s": 0.3}, {"id": "r2", "transcode_s": 30}]
    async with GenesysSim([{"id": "c", "recording": recs}]) as sim:
        token = await genesys_token(session, sim)
        started = time.monotonic()
        got, body, _ = await recordings(
            session, sim, token, "c", "r1", formatId="WAV", maxWaitMs="5000"
        )
        assert got == 200 and "mediaUris" in body
        assert 0.25 <= time.monotonic() - started < 5
        # A wait shorter than the transcode: held that long, then 202.
        started = time.monotonic()
        got, body, _ = await recordings(
            session, sim, token, "c", "r2", formatId="WAV", maxWaitMs="200"
        )
        assert got == 202 and body["estimatedTranscodeTimeMs"] > 29_000
        assert time.monotonic() - started >= 0.2
        # The list waits for the slowest, so it answers 202 with what is ready.
        got, body, _ = await recordings(session, sim, token, "c", formatId="WAV", maxWaitMs="1")
        assert got == 202
        assert ["mediaUris" in r for r in body] == [True, False]


@pytest.mark.parametrize(
    "state", ["ARCHIVED", "DELETED", "ERROR", "RESTORING", "UPLOADING", "RESTORED"]
)
async def test_file_states(session: aiohttp.ClientSession, state: str) -> None:
    async with GenesysSim([{"id": "c", "recording": [{"id": "r", "state": state}]}]) as sim:
        token = await genesys_token(session, sim)
        status, body, _ = await recordings(session, sim, token, "c", "r", formatId="OGG_OPUS")
        assert status == 200 and body["fileState"] == state
        assert ("mediaUris" in body) == (state == "RESTORED")
        if state == "ARCHIVED":
            assert when(body["archiveDate"]) < time.time()
            assert body["archiveMedium"] == "CloudArchive"
        if state == "DELETED":
            assert when(body["deleteDate"]) < time.time()
        if state == "ERROR":
            assert body["recordingErrorStatus"]
        status, listed, _ = await recordings(session, sim, token, "c", formatId="OGG_OPUS")
        assert status == 200 and listed[0]["fileState"] == state


async def test_api_faults(session: aiohttp.ClientSession) -> None:
    faults = [
        {"kind": "throttle", "retry_after": 4, "on": [1]},
        {"kind": "status", "status": 504, "retry_after": 2, "on": [2]},
        {"kind": "expire_token", "on": [3]},
    ]
    async with GenesysSim([{"id": "c", "faults": faults, "recording": [{"id": "r"}]}]) as sim:
        token = await genesys_token(session, sim)
        status, body, headers = await recordings(session, sim, token, "c", formatId="WAV")
        assert status == 429 and headers["Retry-After"] == "4"
        error_shape(body, 429, "too.many.requests.retry.after")
        # Faults count requests per conversation, the list and single GETs alike.
        status, body, headers = await recordings(session, sim, token, "c", "r", formatId="WAV")
        assert status == 504 and headers["Retry-After"] == "2"
        status, body, _ = await recordings(session, sim, token, "c", "r", formatId="WAV")
        assert status == 401
        error_shape(body, 401, "bad.credentials")
        token = await genesys_token(session, sim)
        status, _, _ = await recordings(session, sim, token, "c", "r", formatId="WAV")
        assert status == 200
        assert sim.requests("c") == [429, 504, 401, 200]


async def test_rate_limit(session: aiohttp.ClientSession) -> None:
    settings = GenesysSettings(rate_limit=2, rate_window_s=60)
    async with GenesysSim([{"id": "c", "recording": [{"id": "r"}]}], settings=settings) as sim:
        token = await genesys_token(session, sim)
        statuses = []
        for _ in range(3):
            status, body, headers = await recordings(session, sim, token, "c", formatId="WAV")
            statuses.append(status)
        assert statuses == [200, 200, 429]
        error_shape(body, 429, "too.many.requests.retry.after")
        assert 1 <= int(headers["Retry-After"]) <= 60
        assert sim.state.rate_limited == 1


# -- media ---------------------------------------------------------------------------------


async def media_url(session: aiohttp.ClientSession, sim: GenesysSim, rec: str, fmt: str) -> str:
    token = await genesys_token(session, sim)
    status, body, _ = await recordings(session, sim, token, "c", rec, formatId=fmt)
    assert status == 200, body
    url: str = body["mediaUris"]["S"]["mediaUri"]
    return url


async def test_media_expiry_is_403(session: aiohttp.ClientSession) -> None:
    async with GenesysSim([{"id": "c", "recording": [{"id": "r"}]}]) as sim:
        url = await media_url(session, sim, "r", "OGG_OPUS")
        sim.expire_urls()
        status, body, _ = await download(session, url)
        assert status == 403 and b"<Code>AccessDenied</Code>" in body
        async with session.post(sim.api_url + "/_sim/expire-urls") as resp:
            assert resp.status == 200
        fresh = await media_url(session, sim, "r", "OGG_OPUS")
        assert (await download(session, fresh))[0] == 200
        assert sim.media.stats["r.OGG_OPUS"].urls_issued == 2


async def test_media_faults_on_opus(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    faults = [
        {"kind": "corrupt", "at_byte": 5000, "on": [1]},
        {"kind": "junk_tail", "junk_bytes": 10, "on": [2]},
        {"kind": "truncate", "after_bytes": 7000, "on": [3]},
    ]
    rec = {"id": "r", "segments": 2, "range": False, "faults": faults}
    async with GenesysSim([{"id": "c", "recording": [rec]}]) as sim:
        whole = sim.body("r", "OGG_OPUS")
        url = await media_url(session, sim, "r", "OGG_OPUS")
        path = tmp_path / "r.opus"
        _, data, _ = await download(session, url)
        path.write_bytes(data)
        with pytest.raises(OggError, match="CRC mismatch"):
            check_opus_file(path)
        _, data, _ = await download(session, url)
        assert len(data) == len(whole) + 10 and data.startswith(whole)
        with pytest.raises(aiohttp.ClientPayloadError):
            await download(session, url)
        # The host ignores Range: the resume gets the whole file again.
        status, data, headers = await download(session, url, {"Range": "bytes=7000-"})
        assert status == 200 and data == whole and "Accept-Ranges" not in headers
        path.write_bytes(data)
        assert check_opus_file(path).duration_s == 30.0


# -- control, corpus, CLI ------------------------------------------------------------------


async def test_stats_and_archive_sink(
    session: aiohttp.ClientSession, sim: GenesysSim, token: str
) -> None:
    await recordings(session, sim, token, CONV, "rec-a", formatId="WAV")
    async with session.get(sim.stats_url) as resp:
        stats = await resp.json()
    assert stats["conversations"][CONV] == {"requests": 1, "statuses": [200]}
    assert stats["media"]["rec-a.WAV"]["urls_issued"] == 1
    assert stats["token_requests"] == {"client_credentials": 1}
    payload = json.dumps({"type": "recording.archived", "data": {"recordingId": "rec-a"}})
    now = datetime.now(UTC)
    signature = Webhook(DEFAULT_ARCHIVE_SECRET).sign("msg_1", now, payload)
    signed = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }
    async with session.post(sim.archive_url, data=payload, headers=signed) as resp:
        assert resp.status == 204
    assert [a.webhook_id for a in sim.announcements] == ["msg_1"]


async def test_add_conversations_over_http(
    session: aiohttp.ClientSession, sim: GenesysSim, token: str
) -> None:
    url = sim.api_url + "/_sim/conversations"
    entry = {"id": "added", "recording": [{"id": "added-r", "formats": ["WAV"]}]}
    async with session.post(url, json=entry) as resp:
        assert resp.status == 200 and (await resp.json()) == {"added": ["added"]}
    status, body, _ = await recordings(session, sim, token, "added", "added-r", formatId="WAV")
    assert status == 200 and body["outputSizeInBytes"] == len(sim.body("added-r", "WAV"))
    async with session.post(url, json={"id": "x", "recording": [{"id": "y", "state": "?"}]}) as r:
        assert r.status == 400 and "state must be one of" in (await r.json())["reason"]


def test_default_corpus_is_a_demo() -> None:
    _settings, conversations = default_genesys()
    recs = [r for c in conversations for r in c.recordings]
    assert 8 <= len(recs) <= 12
    assert any(len(c.recordings) > 1 for c in conversations)
    assert (
        sum(1 for r in recs if r.media.faults or r.transcode_s or r.formats != ("OGG_OPUS", "WAV"))
        >= 4
    )


CONV_TOML = '[[genesys.conversation]]\nid = "c"\n'
REC_TOML = '[[genesys.conversation.recording]]\nid = "r"\n'


def test_corpus_validation(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    for text, reason in [
        ("[playback]\n", r"no \[genesys\] table"),
        (CONV_TOML + REC_TOML + 'formats = ["MP3"]\n', "formats must be"),
        (CONV_TOML + REC_TOML + 'state = "GONE"\n', "state must be one of"),
        (CONV_TOML + 'faults = [{ kind = "stall" }]\n', "unknown fault kind 'stall'"),
        (CONV_TOML + REC_TOML + CONV_TOML.replace('"c"', '"d"') + REC_TOML, "duplicate recording"),
        (CONV_TOML + REC_TOML + "transcode_s = -1\n", "transcode_s must be a number >= 0"),
        ("[genesys]\nurl_ttl_s = 0\n", "url_ttl_s must be a number >= 1"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=reason) as err:
            load_genesys_corpus(path)
        assert "\n" not in str(err.value)


async def test_cli_serves_genesys(session: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cxstream.sim",
        "--platform",
        "genesys",
        "--listen",
        "127.0.0.1:0",
        "--client-id",
        "g-cli",
        "--client-secret",
        "g-secret",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(10):
            line = (await proc.stderr.readline()).decode()
        urls = dict(re.findall(r"(\w+)=(\S+)", line))
        assert {"login_url", "api_url", "media_url", "archive_url"} <= set(urls), line
        assert urls["login_url"] != urls["api_url"]
        assert (urls["conversations"], urls["recordings"]) == ("7", "10")
        async with session.post(
            urls["login_url"] + "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers=basic("g-cli", "g-secret"),
        ) as resp:
            assert resp.status == 200
        proc.terminate()
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"grant_type=\xff\xfe", "application/x-www-form-urlencoded"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
        (b'{"grant_type": "password"}', "application/json"),
    ],
)
async def test_token_endpoint_refuses_what_is_not_a_form(
    session: aiohttp.ClientSession, sim: GenesysSim, body: bytes, content_type: str
) -> None:
    headers = {**basic(sim.client_id, sim.client_secret), "Content-Type": content_type}
    async with session.post(sim.token_url, data=body, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_request"
