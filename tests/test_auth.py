"""Contract §9: every row of §2's answer table in every ``webhook.auth`` mode, and allow_from.

In process (tests/ingress.py): the daemon's own app on a loopback port, a
real journal, the real audit pipeline; the workers are never started, so a
job's state is moved by hand and nothing is ever fetched. Each rejection is
checked four ways: the status and reason, the ``webhook.rejected`` line with
``auth`` and ``peer``, an empty journal, and no credential in the answer.
Every trail is validated against the schema and searched for credentials on
the way out of ``ingress()``.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from multidict import CIMultiDict

from cxstream.ingress.auth import peer_allowed
from cxstream.keys import LIFECYCLE, METRICS
from cxstream.sim.server import SimServer
from tests.harness import completed, sign_raw
from tests.ingress import (
    BASIC,
    CHALLENGE,
    JSON,
    MODES,
    PASSWORD,
    TOKEN,
    USER,
    credentials,
    expect_rejected,
    ingress,
    mapped_loopback,
)


def _basic(user: str, password: str) -> dict[str, str]:
    return {
        **JSON,
        "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
    }


# -- 202 and 200 duplicate: idempotency with and without a webhook-id -----------------


@pytest.mark.parametrize("mode", MODES)
async def test_accepted_then_duplicate_while_queued_running_and_done(
    tmp_path: Path, mode: str
) -> None:
    async with ingress(tmp_path, mode) as ing:
        body = completed("rec-1", contactId="c-1")
        headers = credentials(mode, body)
        code, doc, _ = await ing.post(body, headers)
        assert (code, doc) == (202, {"status": "accepted"})
        (row,) = ing.jobs()
        assert (row["recording_id"], row["state"], row["contact_id"]) == ("rec-1", "queued", "c-1")
        signed = mode == "standard-webhooks"
        # Only a signature carries a webhook-id; the static modes store none.
        assert row["webhook_id"] == (headers["webhook-id"] if signed else "")
        (line,) = ing.lines("webhook.accepted")
        assert (line["auth"], line["peer"]) == (mode, "127.0.0.1")
        assert line["webhook_id"] == (headers["webhook-id"] if signed else None)
        assert (line["scope"], line["original_name"]) == ("recording", None)

        async def again() -> None:
            body = completed("rec-1", codec="pcm")
            code, doc, _ = await ing.post(body, credentials(mode, body))
            assert (code, doc) == (200, {"status": "duplicate"})

        await again()  # queued
        job = await ing.journal.claim()
        assert job is not None and job.recording_id == "rec-1"
        await again()  # running
        await ing.journal.complete(job.id, 1, {"recordingId": "rec-1"}, None)
        await again()  # done
        assert [r["state"] for r in ing.jobs()] == ["completed"]
        dups = ing.lines("webhook.duplicate")
        assert len(dups) == 3
        assert all(d["auth"] == mode and d["peer"] == "127.0.0.1" for d in dups)
        assert all(d["recording_id"] == "rec-1" for d in dups)


@pytest.mark.parametrize("mode", MODES)
async def test_a_failed_recording_is_accepted_again(tmp_path: Path, mode: str) -> None:
    async with ingress(tmp_path, mode) as ing:
        body = completed("rec-f")
        assert (await ing.post(body, credentials(mode, body)))[0] == 202
        job = await ing.journal.claim()
        assert job is not None
        await ing.journal.fail(job.id, 3, "recording_not_found")
        body = completed("rec-f", contactId="again")
        code, doc, _ = await ing.post(body, credentials(mode, body))
        assert (code, doc) == (202, {"status": "accepted"})
        (row,) = ing.jobs()
        assert (row["state"], row["attempts"], row["contact_id"]) == ("queued", 0, "again")


async def test_a_replayed_webhook_id_is_a_duplicate_only_when_signed(tmp_path: Path) -> None:
    async with ingress(tmp_path / "sw", "standard-webhooks") as ing:
        first = completed("rec-a")
        headers = sign_raw(first, webhook_id="msg_replayed")
        assert (await ing.post(first, headers))[0] == 202
        other = completed("rec-b")
        code, doc, _ = await ing.post(other, sign_raw(other, webhook_id="msg_replayed"))
        assert (code, doc) == (200, {"status": "duplicate"})
        assert [r["recording_id"] for r in ing.jobs()] == ["rec-a"]
    # Unsigned, a webhook-id header is only the caller's claim: it decides nothing.
    async with ingress(tmp_path / "bearer", "bearer") as ing:
        for rid in ("rec-a", "rec-b"):
            body = completed(rid)
            headers = {**credentials("bearer", body), "webhook-id": "msg_replayed"}
            assert (await ing.post(body, headers))[0] == 202
        assert [r["recording_id"] for r in ing.jobs()] == ["rec-a", "rec-b"]
        assert all(line["webhook_id"] is None for line in ing.lines("webhook.accepted"))


# -- 200 ignored, 400, 413, 415 -----------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_another_type_is_ignored(tmp_path: Path, mode: str) -> None:
    async with ingress(tmp_path, mode) as ing:
        body = orjson.dumps({"type": "recording.deleted", "data": {"recordingId": "rec-1"}})
        code, doc, _ = await ing.post(body, credentials(mode, body))
        assert (code, doc) == (200, {"status": "ignored"})
        (line,) = ing.lines("webhook.ignored")
        assert (line["type"], line["auth"], line["peer"]) == (
            "recording.deleted",
            mode,
            "127.0.0.1",
        )
        assert ing.jobs() == []


BAD = {
    "not-json": b"{nope",
    "not-utf8": b'{"type": "recording.completed", "data": {"recordingId": "r\xff"}}',
    "array": b"[]",
    "no-data": orjson.dumps({"type": "recording.completed"}),
    "id-traversal": completed("../etc/passwd"),
    "id-missing": orjson.dumps({"type": "recording.completed", "data": {"contactId": "c"}}),
    "offsets-decreasing": completed("rec-x", offsets=[15, 0]),
    "codec-unknown": completed("rec-x", codec="mp3"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(BAD))
async def test_a_bad_body_is_400(tmp_path: Path, mode: str, case: str) -> None:
    async with ingress(tmp_path, mode) as ing:
        await expect_rejected(ing, 400, BAD[case], credentials(mode, BAD[case]))


@pytest.mark.parametrize("mode", MODES)
async def test_a_body_over_the_limit_is_413(tmp_path: Path, mode: str) -> None:
    body = completed("rec-x")
    body = body[:-1] + b" " * (64 * 1024 + 1 - len(body)) + b"}"
    async with ingress(tmp_path, mode) as ing:
        await expect_rejected(ing, 413, body, credentials(mode, body))
        # A static credential is judged from the headers, before any body is
        # read: without one the answer is 401. A signature needs the body.
        expected = 413 if mode == "standard-webhooks" else 401
        await expect_rejected(ing, expected, body, JSON)


@pytest.mark.parametrize("mode", MODES)
async def test_a_wrong_content_type_is_415(tmp_path: Path, mode: str) -> None:
    body = completed("rec-x")
    async with ingress(tmp_path, mode) as ing:
        headers = {**credentials(mode, body), "Content-Type": "text/plain"}
        await expect_rejected(ing, 415, body, headers)


# -- 401: missing, wrong and malformed credentials, and each mode's refusal of the others --

Case = Callable[[bytes], dict[str, str]]
UNAUTHORIZED: dict[str, dict[str, Case]] = {
    "standard-webhooks": {
        "nothing": lambda b: JSON,
        "bearer-token-alone": lambda b: credentials("bearer", b),
        "basic-alone": lambda b: credentials("basic", b),
        "wrong-secret": lambda b: sign_raw(
            b, secret="whsec_" + base64.b64encode(b"not-the-secret-0123456789").decode()
        ),
    },
    "bearer": {
        "nothing": lambda b: JSON,
        "signature-headers-alone": lambda b: sign_raw(b),
        "basic-credentials": lambda b: credentials("basic", b),
        "wrong-token": lambda b: {**JSON, "Authorization": "Bearer " + TOKEN[:-1] + "x"},
        "token-prefix": lambda b: {**JSON, "Authorization": "Bearer " + TOKEN[:-1]},
        "token-longer": lambda b: {**JSON, "Authorization": "Bearer " + TOKEN + "0"},
        "no-token": lambda b: {**JSON, "Authorization": "Bearer"},
        "blank-token": lambda b: {**JSON, "Authorization": "Bearer    "},
        "token-without-scheme": lambda b: {**JSON, "Authorization": TOKEN},
        "non-ascii-token": lambda b: {**JSON, "Authorization": "Bearer tökén"},
        "password-as-token": lambda b: {**JSON, "Authorization": "Bearer " + PASSWORD},
    },
    "basic": {
        "nothing": lambda b: JSON,
        "signature-headers-alone": lambda b: sign_raw(b),
        "bearer-token": lambda b: credentials("bearer", b),
        "wrong-password": lambda b: _basic(USER, PASSWORD + "x"),
        "wrong-user": lambda b: _basic(USER + "x", PASSWORD),
        "swapped": lambda b: _basic(PASSWORD, USER),
        "empty-password": lambda b: _basic(USER, ""),
        "no-colon": lambda b: {
            **JSON,
            "Authorization": "Basic " + base64.b64encode(USER.encode()).decode(),
        },
        "not-base64": lambda b: {**JSON, "Authorization": "Basic !!!not-base64!!!"},
        "no-credentials": lambda b: {**JSON, "Authorization": "Basic "},
        "raw-user-password": lambda b: {**JSON, "Authorization": f"Basic {USER}:{PASSWORD}"},
        "bearer-scheme-with-basic": lambda b: {**JSON, "Authorization": "Bearer " + BASIC},
    },
}
CASES_401 = [(mode, name) for mode, cases in UNAUTHORIZED.items() for name in cases]


@pytest.mark.parametrize(("mode", "case"), CASES_401, ids=[f"{m}:{c}" for m, c in CASES_401])
async def test_a_missing_wrong_or_malformed_credential_is_401(
    tmp_path: Path, mode: str, case: str
) -> None:
    body = completed("rec-x")
    async with ingress(tmp_path, mode) as ing:
        await expect_rejected(ing, 401, body, UNAUTHORIZED[mode][case](body))


@pytest.mark.parametrize("mode", ["bearer", "basic"])
async def test_two_authorization_headers_are_401(tmp_path: Path, mode: str) -> None:
    body = completed("rec-x")
    async with ingress(tmp_path, mode) as ing:
        good = credentials(mode, body)["Authorization"]
        headers = CIMultiDict([("Content-Type", "application/json")])
        headers.add("Authorization", good)
        headers.add("Authorization", good)
        await expect_rejected(ing, 401, body, headers)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value", ["bearer " + TOKEN, "BEARER " + TOKEN, "Bearer  " + TOKEN + " "], ids=repr
)
async def test_the_scheme_is_case_insensitive_and_spaces_are_tolerated(
    tmp_path: Path, value: str
) -> None:
    async with ingress(tmp_path, "bearer") as ing:
        body = completed("rec-x")
        assert (await ing.post(body, {**JSON, "Authorization": value}))[0] == 202


# -- 503 -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_503_while_draining_and_when_the_journal_cannot_record(
    tmp_path: Path, mode: str
) -> None:
    async with ingress(tmp_path, mode) as ing:
        body = completed("rec-x")
        ing.app[LIFECYCLE].draining = True
        line = await expect_rejected(ing, 503, body, credentials(mode, body))
        assert line["reason"] == "shutting down"
        ing.app[LIFECYCLE].draining = False
        await ing.journal.close()
        line = await expect_rejected(ing, 503, body, credentials(mode, body))
        assert line["reason"] == "journal cannot record the job"
        _, _, headers = await ing.post(body, credentials(mode, body))
        assert int(headers["Retry-After"]) > 0


# -- 403: webhook.allow_from --------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_peer_outside_allow_from_is_403_before_anything_else(
    tmp_path: Path, mode: str
) -> None:
    allow = {"allow_from": ["10.0.0.0/8", "fd00::/8"]}
    async with ingress(tmp_path, mode, webhook=allow) as ing:
        body = completed("rec-x")
        await expect_rejected(ing, 403, body, credentials(mode, body))
        # Before the credential, the content type, the size and the drain.
        await expect_rejected(ing, 403, body, JSON)
        await expect_rejected(ing, 403, body, {"Content-Type": "text/plain"})
        await expect_rejected(ing, 403, b"x" * (70 * 1024), JSON)
        ing.app[LIFECYCLE].draining = True
        await expect_rejected(ing, 403, body, credentials(mode, body))
        sample = ing.app[METRICS].registry.get_sample_value
        assert sample("cxstream_webhooks_total", {"outcome": "rejected_403"}) == 5


@pytest.mark.parametrize("mode", MODES)
async def test_a_peer_inside_allow_from_is_served(tmp_path: Path, mode: str) -> None:
    allow = {"allow_from": ["10.0.0.0/8", "127.0.0.0/8"]}
    async with ingress(tmp_path, mode, webhook=allow) as ing:
        body = completed("rec-x")
        assert (await ing.post(body, credentials(mode, body)))[0] == 202
        # Allowed in, the credential still decides.
        code, _, headers = await ing.post(body, JSON)
        assert code == 401 and headers.get("WWW-Authenticate") == CHALLENGE[mode]


@pytest.mark.parametrize(("allow", "status"), [(["127.0.0.1/32"], 202), (["10.0.0.0/8"], 403)])
async def test_an_ipv4_mapped_peer_is_judged_as_ipv4(
    tmp_path: Path, allow: list[str], status: int
) -> None:
    """A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d; allow_from lists IPv4."""
    webhook = {"allow_from": allow}
    async with ingress(tmp_path, "bearer", webhook=webhook, socket_factory=mapped_loopback) as ing:
        body = completed("rec-x")
        code, _, _ = await ing.post(body, credentials("bearer", body))
        assert code == status
        (line,) = ing.lines("webhook.accepted" if status == 202 else "webhook.rejected")
        assert line["peer"] == "127.0.0.1"
        if status == 403:
            assert line["remote"] == "::ffff:127.0.0.1"


def _nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


@pytest.mark.parametrize(
    ("peer", "allow", "allowed"),
    [
        ("203.0.113.9", (), True),
        (None, (), True),
        (None, ("0.0.0.0/0",), False),
        ("10.1.2.3", ("10.0.0.0/8",), True),
        ("11.1.2.3", ("10.0.0.0/8",), False),
        ("10.1.2.3", ("fd00::/8",), False),
        ("fd00::1", ("fd00::/8",), True),
        ("fe80::1%eth0", ("fe80::/10",), True),
        ("192.0.2.1", ("::ffff:192.0.2.0/120",), True),
        ("192.0.2.1", ("192.0.2.1/32", "10.0.0.0/8"), True),
    ],
)
def test_peer_allowed(peer: str | None, allow: tuple[str, ...], allowed: bool) -> None:
    address = None if peer is None else ipaddress.ip_address(peer)
    assert peer_allowed(address, _nets(*allow)) is allowed


# -- end to end: the real workers against the simulator ------------------------------


@pytest.mark.parametrize("mode", ["bearer", "basic"])
async def test_wrong_credentials_fetch_nothing_and_right_ones_archive(
    tmp_path: Path, sim: SimServer, mode: str
) -> None:
    sim.add_recording({"id": "rec-e2e", "segments": 2, "codecs": ["opus"]})
    async with ingress(tmp_path, mode, cxone=sim) as ing:
        body = completed("rec-e2e", contactId="c-1")
        for headers in (JSON, UNAUTHORIZED[mode]["signature-headers-alone"](body)):
            assert (await ing.post(body, headers))[0] == 401
        stats = sim.served("rec-e2e")
        assert sim.state.tokens_issued == 0
        assert (stats.metadata_requests, stats.stream_requests) == (0, 0)
        assert ing.jobs() == []
        assert (await ing.post(body, credentials(mode, body)))[0] == 202
        # The archive announcement comes last: the file is published by then.
        await sim.state.wait_for(lambda: bool(sim.state.announcements), timeout_s=30)
        (announced,) = sim.state.announcements
        assert announced.payload["data"]["recordingId"] == "rec-e2e"
        (done,) = ing.lines("recording.completed")
        path = Path(done["path"])
        assert path.name == "rec-e2e.opus"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == done["sha256"]
        assert stats.metadata_requests >= 1 and stats.stream_requests >= 1
