"""The CXone Media Playback simulator over real loopback sockets: discovery, the
password grant, contact lookups and their faults, and the media host's downloads."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cxstream.formats.mp4 import check_mp4_file
from cxstream.sim.cli import main as cli_main
from cxstream.sim.corpus import default_playback, load_playback_corpus
from cxstream.sim.platform_servers import PlaybackSim
from cxstream.sim.platform_spec import PlaybackSettings, playback_contact_from_dict
from tests.simclient import (
    CONTACTS_PATH,
    basic,
    bearer,
    cxone_token,
    download,
    file_urls,
    jwt_claims,
    lookup,
)

CONTACTS: list[dict[str, Any]] = [
    {"id": "5001"},
    {"id": "5002", "files": [{"audio": "call15"}, {"audio": "call30"}]},
]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def sim() -> AsyncIterator[PlaybackSim]:
    async with PlaybackSim(CONTACTS) as server:
        yield server


@pytest.fixture
async def token(session: aiohttp.ClientSession, sim: PlaybackSim) -> str:
    return await cxone_token(session, sim)


def error_shape(body: Any) -> None:
    assert set(body) == {"internalCode", "message"}


# -- discovery ------------------------------------------------------------------


async def test_openid_configuration(session: aiohttp.ClientSession, sim: PlaybackSim) -> None:
    async with session.get(sim.issuer + "/.well-known/openid-configuration") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["issuer"] == sim.issuer
    assert body["token_endpoint"] == sim.token_url
    assert sim.state.discovery["openid"] == 1


@pytest.mark.parametrize(
    ("mode", "keys"),
    [
        ("both", {"api_endpoint", "area", "domain"}),
        ("api_endpoint", {"api_endpoint"}),
        ("area_domain", {"area", "domain"}),
    ],
)
async def test_cxone_configuration(
    session: aiohttp.ClientSession, mode: str, keys: set[str]
) -> None:
    async with PlaybackSim(settings=PlaybackSettings(discovery=mode)) as sim:
        url = sim.issuer + "/.well-known/cxone-configuration"
        async with session.get(url, params={"tenantId": sim.tenant_id}) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert keys <= set(body) and not {"api_endpoint", "area", "domain"} - keys & set(body)
        if "api_endpoint" in keys:
            assert body["api_endpoint"] == sim.api_url
        if "area" in keys:
            assert (body["area"], body["domain"]) == ("na1", "niceincontact.com")
        async with session.get(url) as resp:
            assert resp.status == 400
            error_shape(await resp.json())
        async with session.get(url, params={"tenantId": "someone-else"}) as resp:
            assert resp.status == 404
            error_shape(await resp.json())
        assert sim.state.discovery["cxone"] == 3


# -- token ------------------------------------------------------------------------


async def test_password_grant_gives_jwt_with_tenant(
    session: aiohttp.ClientSession, sim: PlaybackSim
) -> None:
    form = {"grant_type": "password", "username": sim.access_key_id}
    form["password"] = sim.access_key_secret
    async with session.post(
        sim.token_url, data=form, headers=basic(sim.client_id, sim.client_secret)
    ) as resp:
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        body = await resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    header, _claims, signature = body["access_token"].split(".")
    assert json.loads(b64url_decode(header)) == {"alg": "HS256", "typ": "JWT"}
    assert len(b64url_decode(signature)) == 32
    claims = jwt_claims(body["access_token"])
    assert claims["tenantId"] == sim.tenant_id
    assert claims["iss"] == sim.issuer
    assert claims["exp"] - claims["iat"] == 3600
    # The token works on the API host.
    status, _, _ = await lookup(session, sim, body["access_token"], "5001")
    assert status == 200
    # The refresh token gives a new access token.
    refresh = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    async with session.post(
        sim.token_url, data=refresh, headers=basic(sim.client_id, sim.client_secret)
    ) as resp:
        assert resp.status == 200
        assert (await resp.json())["access_token"] != body["access_token"]
    assert sim.state.token_requests == {"password": 1, "refresh_token": 1}


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


async def test_client_credentials_in_the_form(
    session: aiohttp.ClientSession, sim: PlaybackSim
) -> None:
    form = {
        "grant_type": "password",
        "username": sim.access_key_id,
        "password": sim.access_key_secret,
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
    }
    async with session.post(sim.token_url, data=form) as resp:
        assert resp.status == 200
    # Basic and form naming different clients is refused.
    async with session.post(
        sim.token_url, data=form | {"client_id": "other"}, headers=basic(sim.client_id, "x")
    ) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("wrong", "status", "error"),
    [
        ("client_id", 401, "invalid_client"),
        ("client_secret", 401, "invalid_client"),
        ("username", 400, "invalid_grant"),
        ("password", 400, "invalid_grant"),
    ],
)
@pytest.mark.parametrize("client_auth", ["basic", "form"])
async def test_each_of_four_credentials_is_checked(
    session: aiohttp.ClientSession,
    sim: PlaybackSim,
    wrong: str,
    status: int,
    error: str,
    client_auth: str,
) -> None:
    creds = {
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "username": sim.access_key_id,
        "password": sim.access_key_secret,
    }
    creds[wrong] += "x"
    form = {"grant_type": "password", "username": creds["username"]}
    form["password"] = creds["password"]
    headers = {}
    if client_auth == "basic":
        headers = basic(creds["client_id"], creds["client_secret"])
    else:
        form |= {"client_id": creds["client_id"], "client_secret": creds["client_secret"]}
    async with session.post(sim.token_url, data=form, headers=headers) as resp:
        assert resp.status == status
        body = await resp.json()
        assert body["error"] == error
        if status == 401:
            assert resp.headers["WWW-Authenticate"].startswith("Basic")
        # No secret is echoed back.
        assert creds[wrong] not in json.dumps(body)
    assert sim.state.tokens_issued == 0


async def test_other_grants_refused(session: aiohttp.ClientSession, sim: PlaybackSim) -> None:
    headers = basic(sim.client_id, sim.client_secret)
    for form, error in [
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({}, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": "never-issued"}, "invalid_grant"),
    ]:
        async with session.post(sim.token_url, data=form, headers=headers) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == error
    async with session.post(sim.token_url, data={"grant_type": "password"}) as resp:
        assert resp.status == 401  # no client credentials at all
    assert sim.state.tokens_issued == 0


# -- lookup -----------------------------------------------------------------------


async def test_lookup_shape_and_media(
    session: aiohttp.ClientSession, sim: PlaybackSim, token: str, tmp_path: Path
) -> None:
    status, body, _ = await lookup(session, sim, token, "5002")
    assert status == 200
    assert body["acdcontactId"] == "5002" and body["elevatedInteraction"] is False
    assert [i["mediaType"] for i in body["interactions"]] == ["voice-only", "voice-only"]
    for index, (item, seconds) in enumerate(zip(body["interactions"], (15, 30), strict=True), 1):
        data = item["data"]
        assert data["waveformDataList"] == []
        assert "redirectUrl" not in data
        start = datetime.fromisoformat(data["startTime"])
        end = datetime.fromisoformat(data["endTime"])
        assert (end - start).total_seconds() == seconds
        status, content, headers = await download(session, data["fileToPlayUrl"])
        assert status == 200
        assert content == sim.body("5002", index)
        assert headers["Content-Type"] == "audio/mp4"
        assert headers["Content-Length"] == str(len(content))
        path = tmp_path / f"{index}.mp4"
        path.write_bytes(content)
        assert check_mp4_file(path).duration_s == seconds
    # Each lookup issues fresh URLs.
    _, again, _ = await lookup(session, sim, token, "5002")
    assert set(file_urls(again)).isdisjoint(file_urls(body))
    assert sim.media.stats["5002.1"].urls_issued == 2
    assert sim.lookups("5002") == [200, 200]


async def test_lookup_options(session: aiohttp.ClientSession, sim: PlaybackSim, token: str) -> None:
    _, body, _ = await lookup(
        session, sim, token, "5001", **{"exclude-waveforms": "false", "isDownload": "true"}
    )
    data = body["interactions"][0]["data"]
    assert data["waveformDataList"] and data["redirectUrl"] == data["fileToPlayUrl"]
    status, body, _ = await lookup(session, sim, token, "5001", **{"media-type": "chat"})
    assert status == 200 and body["interactions"] == []
    status, body, _ = await lookup(session, sim, token, "5001", **{"media-type": "all"})
    assert status == 200 and len(body["interactions"]) == 1


async def test_lookup_errors(session: aiohttp.ClientSession, sim: PlaybackSim, token: str) -> None:
    for params, status in [
        ({"acd-call-id": ""}, 400),
        ({"media-type": "video"}, 400),
        ({"exclude-waveforms": "maybe"}, 400),
        ({"acd-call-id": "no-such-contact"}, 404),
    ]:
        contact = params.pop("acd-call-id", "5001")
        got, body, _ = await lookup(session, sim, token, contact, **params)
        assert got == status, params
        error_shape(body)
    _, body, _ = await lookup(session, sim, token, "no-such-contact")
    assert body["message"] == "Interaction not found"
    assert sim.state.unknown_lookups == 2


async def test_lookup_needs_a_valid_token(
    session: aiohttp.ClientSession, sim: PlaybackSim, token: str
) -> None:
    url = sim.api_url + CONTACTS_PATH
    async with session.get(url, params={"acd-call-id": "5001"}) as resp:
        assert resp.status == 401
        error_shape(await resp.json())
    sim.expire_tokens()
    status, body, _ = await lookup(session, sim, token, "5001")
    assert status == 401
    error_shape(body)
    # The issuer's host does not serve the API, nor the API host tokens.
    async with session.get(sim.issuer + CONTACTS_PATH, headers=bearer(token)) as resp:
        assert resp.status == 404
    async with session.post(sim.api_url + "/auth/token") as resp:
        assert resp.status in (404, 405)


async def test_not_ready_then_found(session: aiohttp.ClientSession, token: str) -> None:
    sim = PlaybackSim([{"id": "late", "not_ready_s": 0.4}])
    added_by = time.monotonic()  # the contact's call ended before this
    async with sim:
        token = await cxone_token(session, sim)
        status, body, _ = await lookup(session, sim, token, "late")
        assert status == 404 and body["message"] == "Interaction not found"
        # What is tested is the clock: wait out exactly the not-ready period.
        await asyncio.sleep(max(0.0, added_by + 0.4 - time.monotonic()))
        status, body, _ = await lookup(session, sim, token, "late")
        assert status == 200 and file_urls(body)
        assert sim.lookups("late") == [404, 200]


async def test_lookup_faults(session: aiohttp.ClientSession) -> None:
    faults = [
        {"kind": "not_found", "on": [1]},
        {"kind": "throttle", "retry_after": 7, "on": [2]},
        {"kind": "throttle_bare", "on": [3]},
        {"kind": "status", "status": 502, "retry_after": 2, "on": [4]},
        {"kind": "expire_token", "on": [5]},
    ]
    async with PlaybackSim([{"id": "7", "faults": faults}]) as sim:
        token = await cxone_token(session, sim)
        status, body, _ = await lookup(session, sim, token, "7")
        assert status == 404 and body["message"] == "Interaction not found"
        status, body, headers = await lookup(session, sim, token, "7")
        assert status == 429 and body == {"message": "Too Many Requests", "route": CONTACTS_PATH}
        assert headers["Retry-After"] == "7"
        status, body, headers = await lookup(session, sim, token, "7")
        assert status == 429 and set(body) == {"message", "route"}
        assert "Retry-After" not in headers
        status, body, headers = await lookup(session, sim, token, "7")
        assert status == 502 and headers["Retry-After"] == "2"
        error_shape(body)
        status, body, _ = await lookup(session, sim, token, "7")
        assert status == 401
        status, _, _ = await lookup(session, sim, token, "7")
        assert status == 401  # that token stays revoked
        token = await cxone_token(session, sim)
        status, _, _ = await lookup(session, sim, token, "7")
        assert status == 200
        # Faults count authenticated lookups: the 401 for a revoked token is not one.
        assert sim.lookups("7") == [404, 429, 429, 502, 401, 200]


@pytest.mark.parametrize("retry_after", [True, False])
async def test_rate_limit(session: aiohttp.ClientSession, retry_after: bool) -> None:
    settings = PlaybackSettings(rate_limit=3, rate_window_s=300, rate_limit_retry_after=retry_after)
    async with PlaybackSim([{"id": "1"}], settings=settings) as sim:
        token = await cxone_token(session, sim)
        statuses = []
        for _ in range(4):
            status, body, headers = await lookup(session, sim, token, "1")
            statuses.append(status)
        assert statuses == [200, 200, 200, 429]
        assert body == {"message": "Too Many Requests", "route": CONTACTS_PATH}
        if retry_after:
            assert 1 <= int(headers["Retry-After"]) <= 300
        else:
            assert "Retry-After" not in headers
        assert sim.state.rate_limited == 1


# -- media host ----------------------------------------------------------------------


async def media_url(
    session: aiohttp.ClientSession, sim: PlaybackSim, contact: str, index: int = 1
) -> str:
    token = await cxone_token(session, sim)
    status, body, _ = await lookup(session, sim, token, contact)
    assert status == 200
    return file_urls(body)[index - 1]


async def test_media_range_support(session: aiohttp.ClientSession) -> None:
    files = [{"audio": "call15"}, {"audio": "call15", "range": False, "chunked": True}]
    async with PlaybackSim([{"id": "r", "files": files}]) as sim:
        whole = sim.body("r")
        url = await media_url(session, sim, "r", 1)
        status, data, headers = await download(session, url, {"Range": "bytes=1000-"})
        assert status == 206 and data == whole[1000:]
        assert headers["Content-Range"] == f"bytes 1000-{len(whole) - 1}/{len(whole)}"
        assert headers["Accept-Ranges"] == "bytes"
        status, data, headers = await download(session, url, {"Range": "bytes=10-19"})
        assert status == 206 and data == whole[10:20]
        status, _, headers = await download(session, url, {"Range": f"bytes={len(whole)}-"})
        assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"
        status, data, _ = await download(session, url, {"Range": "items=1-"})
        assert status == 200 and data == whole  # a Range it cannot use is ignored
        # The second file's host ignores Range and sends chunked.
        url = await media_url(session, sim, "r", 2)
        status, data, headers = await download(session, url, {"Range": "bytes=1000-"})
        assert status == 200 and data == whole
        assert "Accept-Ranges" not in headers and "Content-Range" not in headers
        assert headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in headers
        downloads = sim.media.stats["r.2"].downloads
        assert [(d.range, d.status, d.bytes) for d in downloads] == [
            ("bytes=1000-", 200, len(whole))
        ]


async def test_media_records_authorization_headers(
    session: aiohttp.ClientSession, sim: PlaybackSim
) -> None:
    url = await media_url(session, sim, "5001")
    status, _, _ = await download(session, url)
    assert status == 200
    status, _, _ = await download(session, url, bearer("should-not-be-sent"))
    assert status == 200  # ignored, but counted
    stats = sim.media.stats["5001.1"]
    assert [d.authorization for d in stats.downloads] == [False, True]
    assert stats.auth_headers == 1
    async with session.get(sim.api_url + "/_sim/stats") as resp:
        snapshot = await resp.json()
    assert snapshot["media"]["5001.1"]["auth_headers"] == 1
    assert snapshot["contacts"]["5001"] == {"lookups": 1, "statuses": [200]}
    assert snapshot["tokens_issued"] == 1


async def test_media_url_expiry_and_signature(session: aiohttp.ClientSession) -> None:
    settings = PlaybackSettings(expired_status=404, url_ttl_s=3600)
    async with PlaybackSim([{"id": "e"}], settings=settings) as sim:
        url = await media_url(session, sim, "e")
        status, _, _ = await download(session, url)
        assert status == 200
        sim.expire_urls()
        status, body, headers = await download(session, url)
        assert status == 404 and b"expired" in body
        assert headers["Content-Type"].startswith("application/xml")
        fresh = await media_url(session, sim, "e")
        assert (await download(session, fresh))[0] == 200
        tampered = re.sub(r"Signature=[0-9a-f]+", "Signature=" + "0" * 64, fresh)
        status, body, _ = await download(session, tampered)
        assert status == 403 and b"SignatureDoesNotMatch" in body
        later = re.sub(r"Expires=(\d+)", lambda m: f"Expires={int(m[1]) + 100}", fresh)
        assert (await download(session, later))[0] == 403
        base = fresh.split("?")[0]
        non_ascii = re.sub(r"Signature=[0-9a-f]+", "Signature=%C3%A9", fresh)
        for broken in (non_ascii, base + "?Expires=soon", base):
            assert (await download(session, broken))[0] == 403, broken
        assert (await download(session, sim.media_url + "/media/nope/x.mp4"))[0] == 404


async def test_media_url_expires_with_time(session: aiohttp.ClientSession) -> None:
    async with PlaybackSim([{"id": "t"}], settings=PlaybackSettings(url_ttl_s=1)) as sim:
        url = await media_url(session, sim, "t")
        expires = int(re.search(r"Expires=(\d+)", url)[1])  # type: ignore[index]
        assert expires <= time.time() + 1
        assert (await download(session, url))[0] == 200
        # What is tested is the clock: wait until Expires has passed.
        await asyncio.sleep(max(0.0, expires - time.time() + 0.01))
        status, body, _ = await download(session, url)
        assert status == 403 and b"Request has expired" in body


async def test_media_expired_fault_and_status(session: aiohttp.ClientSession) -> None:
    faults = [
        {"kind": "expired", "on": [1]},
        {"kind": "status", "status": 503, "retry_after": 3, "on": [2]},
        {"kind": "status", "status": 429, "on": [3]},
    ]
    async with PlaybackSim([{"id": "f", "files": [{"faults": faults}]}]) as sim:
        url = await media_url(session, sim, "f")
        assert (await download(session, url))[0] == 403
        status, _, headers = await download(session, url)
        assert status == 503 and headers["Retry-After"] == "3"
        status, _, headers = await download(session, url)
        assert status == 429 and headers["Retry-After"] == "1"
        status, data, _ = await download(session, url)
        assert status == 200 and data == sim.body("f")
        assert [d.faults for d in sim.media.stats["f.1"].downloads] == [
            ["expired"],
            ["status"],
            ["status"],
            [],
        ]


@pytest.mark.parametrize("chunked", [False, True])
async def test_media_stall(session: aiohttp.ClientSession, chunked: bool) -> None:
    files = [{"chunked": chunked, "faults": [{"kind": "stall", "after_bytes": 5000, "on": [1]}]}]
    async with PlaybackSim([{"id": "s", "files": files}]) as sim:
        url = await media_url(session, sim, "s")
        stats = sim.media.stats["s.1"]
        async with session.get(url) as resp:
            assert resp.status == 200
            async with asyncio.timeout(5):
                received = await resp.content.readexactly(5000)
            assert received == sim.body("s")[:5000]
            await sim.wait_for(lambda: stats.active == 1 and stats.bytes_served == 5000)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await resp.content.read(1)
        await sim.wait_for(lambda: stats.active == 0)  # the client left; so does the handler
        status, data, _ = await download(session, url)
        assert status == 200 and data == sim.body("s")


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("after_bytes", [0, 1000, 20000])
async def test_media_truncate(
    session: aiohttp.ClientSession, chunked: bool, after_bytes: int
) -> None:
    files = [{"chunked": chunked, "faults": [{"kind": "truncate", "after_bytes": after_bytes}]}]
    async with PlaybackSim([{"id": "c", "files": files}]) as sim:
        url = await media_url(session, sim, "c")
        received = b""
        async with session.get(url) as resp:
            assert resp.status == 200
            if not chunked:
                assert resp.headers["Content-Length"] == str(len(sim.body("c")))
            with pytest.raises(aiohttp.ClientPayloadError):
                while chunk := await resp.content.read(65536):
                    received += chunk
        assert received == sim.body("c")[:after_bytes]


async def test_media_corrupt_junk_and_trickle(session: aiohttp.ClientSession) -> None:
    faults = [
        {"kind": "corrupt", "at_byte": 3000, "on": [1]},
        {"kind": "junk_tail", "junk_bytes": 100, "on": [2]},
        {"kind": "trickle", "bytes_per_second": 100_000, "on": [3]},
    ]
    async with PlaybackSim([{"id": "b", "files": [{"faults": faults}]}]) as sim:
        whole = sim.body("b")
        url = await media_url(session, sim, "b")
        _, data, _ = await download(session, url)
        assert len(data) == len(whole) and data != whole
        assert [i for i in range(len(whole)) if data[i] != whole[i]] == [3000]
        _, data, headers = await download(session, url)
        assert data[: len(whole)] == whole and len(data) == len(whole) + 100
        assert headers["Content-Length"] == str(len(whole) + 100)
        started = time.monotonic()
        _, data, _ = await download(session, url)
        assert data == whole
        # 31800 bytes at 100 kB/s: the host paces itself to at least ~0.3 s.
        assert time.monotonic() - started >= 0.25


# -- corpus and CLI --------------------------------------------------------------------


def test_default_corpus_is_a_demo() -> None:
    settings, contacts = default_playback()
    files = [f for c in contacts for f in c.files]
    assert 8 <= len(files) <= 12
    assert sum(1 for c in contacts if c.faults or c.not_ready_s) >= 2
    assert sum(1 for f in files if f.media.faults or not f.media.range) >= 4
    assert settings.expired_status == 403


def test_corpus_validation(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"playback": {"contact": [{"id": 42, "not_ready_s": 1.5}]}}))
    settings, contacts = load_playback_corpus(path)
    assert contacts[0].id == "42" and contacts[0].not_ready_s == 1.5
    assert settings == PlaybackSettings()
    bad = [
        ({"recording": []}, "no \\[playback\\] table"),
        ({"playback": {"contact": [{"id": "a", "files": []}]}}, "at least one voice file"),
        ({"playback": {"contact": [{"id": "a", "files": [{"audio": "x"}]}]}}, "audio must be"),
        ({"playback": {"contact": [{"id": "a", "colour": 1}]}}, "unknown key 'colour'"),
        ({"playback": {"contact": [{"id": "a"}, {"id": "a"}]}}, "duplicate contact id 'a'"),
        ({"playback": {"expired_status": 500}}, "expired_status must be one of"),
        ({"playback": {"contact": [{"id": "a", "faults": [{"kind": "stall"}]}]}}, "unknown fault"),
        (
            {"playback": {"contact": [{"id": "a", "files": [{"faults": [{"kind": "status"}]}]}]}},
            None,
        ),
        (
            {"playback": {"contact": [{"id": "a", "faults": [{"kind": "status", "status": 429}]}]}},
            "status must be 503 or 500 or 502 or 504",
        ),
    ]
    for data, reason in bad:
        path.write_text(json.dumps(data))
        if reason is None:
            load_playback_corpus(path)
            continue
        with pytest.raises(ValueError, match=reason) as err:
            load_playback_corpus(path)
        assert "\n" not in str(err.value)
    contact = playback_contact_from_dict({"id": "x", "files": [{"faults": [{"kind": "status"}]}]})
    assert contact.files[0].media.faults[0].status == 503


def test_cli_bad_arguments() -> None:
    assert cli_main(["--platform", "cxone-playback", "--corpus", "/nonexistent.toml"]) == 2
    assert cli_main(["--platform", "cxone-playback", "--auth-listen", "x"]) == 2
    assert cli_main(["--platform", "nice"]) == 2


async def test_cli_serves_playback(session: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cxstream.sim",
        "--platform",
        "cxone-playback",
        "--listen",
        "127.0.0.1:0",
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(10):
            line = (await proc.stderr.readline()).decode()
        urls = dict(re.findall(r"(\w+)=(\S+)", line))
        assert {"issuer", "token_url", "api_url", "media_url", "archive_url"} <= set(urls), line
        assert urls["contacts"] == "9"
        async with session.get(urls["issuer"] + "/.well-known/openid-configuration") as resp:
            assert (await resp.json())["token_endpoint"] == urls["token_url"]
        proc.terminate()
        async with asyncio.timeout(10):
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_add_contacts_over_http(session: aiohttp.ClientSession, sim: PlaybackSim) -> None:
    url = sim.api_url + "/_sim/contacts"
    async with session.post(url, json=[{"id": "new-1"}, {"id": "new-2", "not_ready_s": 1}]) as r:
        assert r.status == 200 and (await r.json()) == {"added": ["new-1", "new-2"]}
    assert {"new-1", "new-2"} <= set(sim.state.contacts)
    # All or nothing: one bad entry adds none.
    async with session.post(url, json=[{"id": "new-3"}, {"id": "bad", "files": "x"}]) as r:
        assert r.status == 400
        assert "files must be a list" in (await r.json())["reason"]
    async with session.post(url, data=b"{") as r:
        assert r.status == 400
    assert "new-3" not in sim.state.contacts


async def test_stop_ends_a_stalled_download(session: aiohttp.ClientSession) -> None:
    files = [{"faults": [{"kind": "stall", "after_bytes": 100}]}]
    sim = PlaybackSim([{"id": "s", "files": files}])
    await sim.start()
    try:
        url = await media_url(session, sim, "s")
        async with session.get(url) as resp:
            await sim.wait_for(lambda: sim.media.stats["s.1"].bytes_served == 100)
            started = time.monotonic()
            await sim.stop()
            assert time.monotonic() - started < 1.5
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
    finally:
        await sim.stop()


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"grant_type=\xff\xfe", "application/x-www-form-urlencoded"),
        (b"--x\r\nbroken", "multipart/form-data; boundary=x"),
        (b'{"grant_type": "password"}', "application/json"),
    ],
)
async def test_token_endpoint_refuses_what_is_not_a_form(
    session: aiohttp.ClientSession, sim: PlaybackSim, body: bytes, content_type: str
) -> None:
    headers = {**basic(sim.client_id, sim.client_secret), "Content-Type": content_type}
    async with session.post(sim.token_url, data=body, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_request"
