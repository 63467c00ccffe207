"""Contract §2 through real sockets: every row of the webhook's answer table.

One simulator and one daemon serve the whole module (``concurrency = 1``, so a
slow recording holds the only worker and a second one provably waits in the
queue). Every rejected request is checked three ways: a JSON body with the
reason, a ``webhook.rejected`` audit line with the same reason, and not one
request at the simulator's CXone API. The module ends with the admin
endpoints, the metrics against a tally of every answer, and a sweep of the
whole audit trail for secrets. A second, short-lived daemon covers the two
503 rows (shutting down; the journal cannot record the job).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import signal
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from cxstream.admin import build_admin_app
from cxstream.audit.log import open_audit
from cxstream.config import load
from cxstream.ingress.event import EventError, parse_event
from cxstream.journal import JobRequest, JournalError
from cxstream.keys import CONFIG, GUARD, JOURNAL, LIFECYCLE, METRICS, Lifecycle
from cxstream.metrics import Metrics
from cxstream.sim.server import SimServer
from cxstream.sim.spec import recording_from_dict
from cxstream.sink.space import DiskGuard
from tests.harness import (
    ARCHIVE_SECRET,
    CLIENT_ID,
    CLIENT_SECRET,
    WEBHOOK_SECRET,
    Daemon,
    completed,
    raw_post,
    sign,
    sign_raw,
    write_config,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

LIMIT = 64 * 1024
OTHER_SECRET = "whsec_" + base64.b64encode(b"not-the-daemon-secret-0123456789").decode()
CORPUS = [
    {"id": "rec-ok", "segments": 2, "codecs": ["opus"]},
    {"id": "rec-pcm", "segments": 3, "codecs": ["opus", "pcm"]},
    # Two stalls of idle_timeout_s (1 s) each: "running" for at least 2 s.
    {
        "id": "rec-slow",
        "segments": 2,
        "codecs": ["opus"],
        "faults": [{"kind": "stall", "after_bytes": 1000, "times": 2}],
    },
    {"id": "rec-queued", "segments": 1, "codecs": ["opus", "pcm"]},
    {"id": "rec-ts", "segments": 1, "codecs": ["opus"]},
    # rec-late is deliberately absent: 404, recording.failed, then added.
]


@dataclass
class Env:
    sim: SimServer
    daemon: Daemon
    session: aiohttp.ClientSession
    tmp: Path
    cxone_calls: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)
    # What the daemon answered, per metrics outcome, for the /metrics cross-check.
    outcomes: Counter[str] = field(default_factory=Counter)
    statuses: list[int] = field(default_factory=list)

    def cxone(self) -> tuple[int, int, int, int]:
        """Every sign of a call to CXone: requests seen, tokens, per-recording counters."""
        stats = self.sim.state
        return (
            len(self.cxone_calls),
            stats.tokens_issued,
            sum(s.metadata_requests for s in stats.recording_stats.values()),
            sum(s.stream_requests for s in stats.recording_stats.values()),
        )

    async def post(
        self, body: bytes, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = sign(body) if headers is None else headers
        if "webhook-signature" in headers:
            self.signatures.append(headers["webhook-signature"])
        async with self.session.post(
            self.daemon.webhook_url, data=body, headers=headers, **kwargs
        ) as resp:
            raw = await resp.read()
            self.statuses.append(resp.status)
            doc: Any = raw
            if resp.content_type == "application/json":
                doc = orjson.loads(raw)
            self._tally(resp.status, doc)
            return resp.status, doc

    def _tally(self, status: int, doc: Any) -> None:
        if status == 202:
            self.outcomes["accepted"] += 1
        elif status == 200 and isinstance(doc, dict):
            self.outcomes[str(doc.get("status"))] += 1
        else:
            self.outcomes[f"rejected_{status}"] += 1


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    tmp = tmp_path_factory.mktemp("webhook")
    sim = SimServer(
        [recording_from_dict(r) for r in CORPUS],
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        archive_secret=ARCHIVE_SECRET,
    )
    calls: list[str] = []
    tokens: list[str] = []

    async def seen(request: web.Request, _response: web.StreamResponse) -> None:
        # The archive sink lives on the same server; only /api and /auth are CXone.
        if request.path.startswith(("/api/", "/auth/")):
            calls.append(request.path_qs)

    sim.app.on_response_prepare.append(seen)
    issue = sim.state.issue_token

    def issue_and_remember() -> str:
        token = issue()
        tokens.append(token)
        return token

    sim.state.issue_token = issue_and_remember  # type: ignore[method-assign]
    async with sim, aiohttp.ClientSession() as session:
        config = write_config(tmp, sim, streams={"concurrency": 1}, webhook={"body_timeout_s": 1.0})
        daemon = Daemon(config)
        await daemon.start()
        e = Env(sim=sim, daemon=daemon, session=session, tmp=tmp, cxone_calls=calls, tokens=tokens)
        try:
            yield e
        finally:
            code = await daemon.stop()
        assert code == 0, daemon.stderr.decode()[-2000:]


async def expect_rejected(
    env: Env, status: int, body: bytes, headers: dict[str, str] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """Post, then check the answer, the audit line and the simulator's silence."""
    d = env.daemon
    before_lines = len(d.find("webhook.rejected"))
    before_cxone = env.cxone()
    code, doc = await env.post(body, headers, **kwargs)
    assert code == status, doc
    assert isinstance(doc, dict), doc
    assert isinstance(doc.get("error"), str) and doc["error"], doc
    lines = await d.wait_for(lambda: d.find("webhook.rejected")[before_lines:], timeout_s=5)
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["status"] == status
    assert line["reason"] == doc["error"]
    assert line["level"] == "warning"
    wid = (headers or {}).get("webhook-id")
    if wid and re.fullmatch(r"[\x21-\x7e]{1,256}", wid):
        assert line["webhook_id"] == wid
    assert env.cxone() == before_cxone
    return line


# -- 202 accepted, and the job really runs ----------------------------------------


async def test_accepted_job_runs_to_a_verified_file(env: Env) -> None:
    d = env.daemon
    code, doc = await env.post(completed("rec-ok", contactId="c-77"))
    assert (code, doc) == (202, {"status": "accepted"})
    accepted = await d.wait_event("webhook.accepted", recording_id="rec-ok")
    assert accepted["contact_id"] == "c-77"
    done = await d.wait_event("recording.completed", recording_id="rec-ok")
    path = Path(done["path"])
    assert path.is_file() and path.stat().st_size == done["bytes"] > 0
    assert hashlib.sha256(path.read_bytes()).hexdigest() == done["sha256"]
    # Filed under the event's date (2026-11-24), beside its sidecar.
    assert path == env.tmp / "recordings" / "2026" / "11" / "24" / "rec-ok.opus"
    assert orjson.loads(path.with_suffix(".json").read_bytes())["recordingId"] == "rec-ok"


async def test_accepted_with_codec_and_offsets(env: Env) -> None:
    d = env.daemon
    body = completed("rec-pcm", codec="pcm", offsets=[15, 30])
    code, doc = await env.post(body)
    assert (code, doc) == (202, {"status": "accepted"})
    accepted = await d.wait_event("webhook.accepted", recording_id="rec-pcm")
    assert accepted["codec"] == "pcm" and accepted["offsets"] == [15, 30]
    done = await d.wait_event("recording.completed", recording_id="rec-pcm")
    assert done["codec"] == "pcm"
    assert Path(done["path"]).name == "rec-pcm.wav" and Path(done["path"]).is_file()
    sidecar = orjson.loads(Path(done["path"]).with_suffix(".json").read_bytes())
    assert [s["offset"] for s in sidecar["segments"]] == [15, 30]


async def test_event_timestamp_out_of_range_is_still_accepted(env: Env) -> None:
    # Year 1 at +14:00 is out of range in UTC: the folder falls back to the
    # receipt date instead of the handler failing (it used to answer 503).
    d = env.daemon
    body = completed("rec-ts")
    body = body.replace(b"2026-11-24T10:00:00Z", b"0001-01-01T00:00:00+14:00")
    assert b"0001-01-01" in body
    code, doc = await env.post(body)
    assert (code, doc) == (202, {"status": "accepted"})
    done = await d.wait_event("recording.completed", recording_id="rec-ts")
    day = Path(done["path"]).parent.relative_to(env.tmp / "recordings")
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}", str(day)), day
    assert str(day) != "0001/01/01"


# -- 200 duplicate ------------------------------------------------------------------


async def test_duplicate_webhook_id_and_done_recording(env: Env) -> None:
    d = env.daemon
    await d.wait_event("recording.completed", recording_id="rec-ok")
    before = env.cxone()
    started = len(d.find("recording.started"))
    # The same recording under a new webhook-id, now that it is done.
    code, doc = await env.post(completed("rec-ok"))
    assert (code, doc) == (200, {"status": "duplicate"})
    # A replay: the same webhook-id, byte for byte.
    body = completed("rec-ok", contactId="replayed")
    headers = sign(body)
    code, doc = await env.post(body, headers)
    assert (code, doc) == (200, {"status": "duplicate"})
    code, doc = await env.post(body, headers)
    assert (code, doc) == (200, {"status": "duplicate"})
    # The same webhook-id for another (unknown) recording: still the id that decides.
    other = completed("rec-never-fetched")
    code, doc = await env.post(other, sign(other, webhook_id=headers["webhook-id"]))
    assert (code, doc) == (200, {"status": "duplicate"})
    await d.wait_for(lambda: len(d.find("webhook.duplicate")) >= 4, timeout_s=5)
    assert d.find("webhook.duplicate", recording_id="rec-never-fetched")
    # Nothing new was queued: no job started, CXone not called.
    await asyncio.sleep(0.3)
    assert len(d.find("recording.started")) == started
    assert env.cxone() == before
    assert not d.find("webhook.accepted", recording_id="rec-never-fetched")


async def test_duplicate_while_running_and_while_queued(env: Env) -> None:
    d = env.daemon
    code, _ = await env.post(completed("rec-slow"))
    assert code == 202
    await d.wait_event("stream.request", recording_id="rec-slow")
    # Running (its first stream stalls for a second): a new webhook-id is a duplicate.
    code, doc = await env.post(completed("rec-slow"))
    assert (code, doc) == (200, {"status": "duplicate"})
    # concurrency = 1 and the only worker is busy: this one stays queued.
    code, _ = await env.post(completed("rec-queued"))
    assert code == 202
    code, doc = await env.post(completed("rec-queued", codec="pcm"))
    assert (code, doc) == (200, {"status": "duplicate"})
    assert not d.find("recording.started", recording_id="rec-queued"), "was not queued"
    assert not d.find("recording.completed", recording_id="rec-slow"), "was not running"
    await d.wait_event("recording.completed", recording_id="rec-slow", timeout_s=20)
    await d.wait_event("recording.completed", recording_id="rec-queued", timeout_s=20)
    # Each ran once: the duplicates queued nothing.
    assert len(d.find("recording.started", recording_id="rec-queued")) == 1
    assert len(d.find("recording.completed", recording_id="rec-slow")) == 1
    assert len(d.find("webhook.accepted", recording_id="rec-queued")) == 1
    # The queued one ran with its first webhook's (absent) codec, not the duplicate's.
    assert d.find("recording.completed", recording_id="rec-queued")[0]["codec"] == "opus"


async def test_failed_recording_is_accepted_again(env: Env) -> None:
    d = env.daemon
    body = completed("rec-late")
    headers = sign(body)
    code, _ = await env.post(body, headers)
    assert code == 202
    failed = await d.wait_event("recording.failed", recording_id="rec-late")
    assert failed["error"] == "recording_not_found"
    # The same webhook-id again is still a replay...
    code, doc = await env.post(body, headers)
    assert (code, doc) == (200, {"status": "duplicate"})
    # ...but a new notification for a dead-lettered recording tries again.
    env.sim.state.add_recording(recording_from_dict({"id": "rec-late", "segments": 1}))
    code, doc = await env.post(completed("rec-late"))
    assert (code, doc) == (202, {"status": "accepted"})
    done = await d.wait_event("recording.completed", recording_id="rec-late")
    assert Path(done["path"]).is_file()
    assert len(d.find("webhook.accepted", recording_id="rec-late")) == 2


# -- 200 ignored --------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        {"type": "recording.deleted", "data": {"recordingId": "rec-ok"}},
        {"type": "Recording.Completed", "data": {"recordingId": "rec-ok"}},
        {"type": "contact.ended"},  # no data at all: another type need not have any
        {"type": "recording.completed.v2", "data": "anything"},
    ],
    ids=["deleted", "case", "no-data", "suffix"],
)
async def test_other_types_are_ignored(env: Env, doc: dict[str, Any]) -> None:
    d = env.daemon
    before, ignored = env.cxone(), len(d.find("webhook.ignored"))
    body = orjson.dumps(doc)
    headers = sign(body)
    code, answer = await env.post(body, headers)
    assert (code, answer) == (200, {"status": "ignored"})
    line = (await d.wait_for(lambda: d.find("webhook.ignored")[ignored:], timeout_s=5))[0]
    assert line["webhook_id"] == headers["webhook-id"] and line["type"] == doc["type"]
    assert env.cxone() == before


# -- 400 --------------------------------------------------------------------------------


def _event(data: Any) -> bytes:
    return orjson.dumps(
        {"type": "recording.completed", "timestamp": "2026-11-24T10:00:00Z", "data": data}
    )


BAD_BODIES: dict[str, bytes] = {
    "not-json": b"{this is not json",
    "empty-body": b"",
    "trailing-garbage": completed("rec-x") + b"}",
    "json-array": b'[{"type": "recording.completed"}]',
    "json-string": b'"recording.completed"',
    "json-null": b"null",
    "json-number": b"42",
    "type-missing": orjson.dumps({"data": {"recordingId": "rec-x"}}),
    "type-not-string": orjson.dumps({"type": 1, "data": {"recordingId": "rec-x"}}),
    "data-missing": orjson.dumps({"type": "recording.completed"}),
    "data-string": _event("rec-x"),
    "data-list": _event(["rec-x"]),
    "data-null": _event(None),
    "id-missing": _event({"contactId": "c-1"}),
    "id-traversal": _event({"recordingId": "../etc/passwd"}),
    "id-slash": _event({"recordingId": "a/b"}),
    "id-backslash": _event({"recordingId": "a\\b"}),
    "id-nul": _event({"recordingId": "rec\u0000x"}),
    "id-newline": _event({"recordingId": "rec-x\n"}),
    "id-empty": _event({"recordingId": ""}),
    "id-129-chars": _event({"recordingId": "r" * 129}),
    "id-leading-dot": _event({"recordingId": ".hidden"}),
    "id-leading-dash": _event({"recordingId": "-rf"}),
    "id-dotdot": _event({"recordingId": ".."}),
    "id-space": _event({"recordingId": "rec x"}),
    "id-non-ascii": _event({"recordingId": "réc-1"}),
    "id-number": _event({"recordingId": 1234}),
    "id-null": _event({"recordingId": None}),
    "id-list": _event({"recordingId": ["rec-x"]}),
    "offsets-string": _event({"recordingId": "rec-x", "offsets": "0,15"}),
    "offsets-object": _event({"recordingId": "rec-x", "offsets": {"0": 15}}),
    "offsets-negative": _event({"recordingId": "rec-x", "offsets": [-15, 0]}),
    "offsets-bool": _event({"recordingId": "rec-x", "offsets": [True]}),
    "offsets-float": _event({"recordingId": "rec-x", "offsets": [0, 15.5]}),
    "offsets-string-items": _event({"recordingId": "rec-x", "offsets": ["0", "15"]}),
    "offsets-decreasing": _event({"recordingId": "rec-x", "offsets": [15, 0]}),
    "offsets-repeated": _event({"recordingId": "rec-x", "offsets": [0, 0]}),
    "offsets-empty": _event({"recordingId": "rec-x", "offsets": []}),
    "offsets-huge": b'{"type":"recording.completed","data":{"recordingId":"rec-x",'
    b'"offsets":[0,100000000000000000000000]}}',
    "offsets-too-many": _event({"recordingId": "rec-x", "offsets": list(range(10_001))}),
    "codec-unknown": _event({"recordingId": "rec-x", "codec": "mp3"}),
    "codec-case": _event({"recordingId": "rec-x", "codec": "OPUS"}),
    "codec-number": _event({"recordingId": "rec-x", "codec": 1}),
    "codec-list": _event({"recordingId": "rec-x", "codec": ["opus"]}),
    "contact-too-long": _event({"recordingId": "rec-x", "contactId": "c" * 257}),
    "contact-number": _event({"recordingId": "rec-x", "contactId": 77}),
}


@pytest.mark.parametrize("body", list(BAD_BODIES.values()), ids=list(BAD_BODIES))
async def test_bad_body_is_400(env: Env, body: bytes) -> None:
    line = await expect_rejected(env, 400, body)
    assert "rec\u0000x" not in line["reason"]


async def test_non_utf8_body_is_400(env: Env) -> None:
    body = b'{"type": "recording.completed", "data": {"recordingId": "rec-\xff\xfe"}}'
    headers = sign_raw(body)
    line = await expect_rejected(env, 400, body, headers)
    assert "utf-8" in line["reason"].lower()


async def test_sign_raw_agrees_with_the_library() -> None:
    body = completed("rec-ok")
    when = datetime.now(UTC)
    assert sign_raw(body, webhook_id="msg_1", when=when) == sign(
        body, webhook_id="msg_1", when=when
    )


# -- 401 --------------------------------------------------------------------------------


def _headers_401() -> dict[str, dict[str, str]]:
    body = completed("rec-x")
    good = sign(body)
    sig = good["webhook-signature"]
    now = datetime.now(UTC)

    def with_(**changes: str | None) -> dict[str, str]:
        h = {**sign(body)}
        for name, value in changes.items():
            name = name.replace("_", "-")
            if value is None:
                del h[name]
            else:
                h[name] = value
        return h

    return {
        "no-webhook-id": with_(webhook_id=None),
        "no-webhook-timestamp": with_(webhook_timestamp=None),
        "no-webhook-signature": with_(webhook_signature=None),
        "empty-webhook-id": with_(webhook_id=""),
        "empty-webhook-signature": with_(webhook_signature=""),
        "sig-no-comma": with_(webhook_signature="v1" + sig[3:]),
        "sig-bad-base64": with_(webhook_signature="v1,!!not*base64!!"),
        "sig-bad-padding": with_(webhook_signature="v1,abc"),
        "sig-empty-after-comma": with_(webhook_signature="v1,"),
        "sig-garbage": with_(webhook_signature="garbage"),
        "sig-two-commas": with_(webhook_signature=sig + ",x"),
        "sig-wrong-version": with_(webhook_signature="v2" + sig[2:]),
        "sig-of-other-body": with_(webhook_signature=sign(b"{}")["webhook-signature"]),
        "sig-truncated": with_(webhook_signature=sig[:-8]),
        "wrong-secret": sign(body, secret=OTHER_SECRET),
        "id-not-the-signed-one": {**good, "webhook-id": "msg_someone_else"},
        "timestamp-not-signed": {**good, "webhook-timestamp": str(int(now.timestamp()) + 1)},
        "timestamp-non-numeric": with_(webhook_timestamp="yesterday"),
        "timestamp-negative": with_(webhook_timestamp="-1"),
        "timestamp-fraction": with_(webhook_timestamp=f"{now.timestamp():.3f}"),
        "timestamp-iso": with_(webhook_timestamp=now.isoformat()),
        "timestamp-huge": with_(webhook_timestamp="9" * 40),
        "timestamp-6-min-old": sign(body, when=now - timedelta(minutes=6)),
        "timestamp-6-min-ahead": sign(body, when=now + timedelta(minutes=6)),
        "webhook-id-with-space": sign(body, webhook_id="msg with space"),
        "webhook-id-too-long": sign(body, webhook_id="m" * 257),
    }


_401 = _headers_401()


@pytest.mark.parametrize("name", list(_401), ids=list(_401))
async def test_bad_signature_is_401(env: Env, name: str) -> None:
    # Signed now, not at import (the module-level dict only names the cases), so
    # a slow run cannot age a case out of the ±5 minute tolerance by accident.
    headers = _headers_401()[name]
    body = completed("rec-x")
    await expect_rejected(env, 401, body, headers)


async def test_tampered_body_is_401(env: Env) -> None:
    headers = sign(completed("rec-ok"))
    await expect_rejected(env, 401, completed("rec-x"), headers)


async def test_signature_list_with_one_good_entry_is_accepted(env: Env) -> None:
    # Standard Webhooks: several space-separated signatures, any one may match
    # (secret rotation). An ignored type keeps CXone out of it.
    body = orjson.dumps({"type": "rotation.check"})
    headers = sign(body)
    other = sign(
        body,
        secret=OTHER_SECRET,
        webhook_id=headers["webhook-id"],
        when=datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC),
    )
    headers["webhook-signature"] = (
        f"{other['webhook-signature']} v2,{headers['webhook-signature'][3:]} "
        f"{headers['webhook-signature']}"
    )
    code, doc = await env.post(body, headers)
    assert (code, doc) == (200, {"status": "ignored"})


# -- 413 --------------------------------------------------------------------------------


def _padded(size: int, doc: dict[str, Any]) -> bytes:
    body = orjson.dumps(doc)
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def test_body_over_64k_with_content_length_is_413(env: Env) -> None:
    body = _padded(LIMIT + 1, {"type": "recording.completed", "data": {"recordingId": "rec-x"}})
    assert len(body) == LIMIT + 1
    await expect_rejected(env, 413, body, sign(body))


async def test_body_over_64k_chunked_is_413(env: Env) -> None:
    body = _padded(LIMIT + 100, {"type": "recording.completed", "data": {"recordingId": "rec-x"}})

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    # An async generator: aiohttp sends it chunked, with no Content-Length.
    await expect_rejected(env, 413, chunks(), sign(body))  # type: ignore[arg-type]


async def test_body_of_exactly_64k_is_not_413(env: Env) -> None:
    body = _padded(LIMIT, {"type": "padding.check"})
    assert len(body) == LIMIT
    code, doc = await env.post(body)
    assert (code, doc) == (200, {"status": "ignored"})


async def test_huge_content_length_is_refused_before_the_body(env: Env) -> None:
    """413 from the header alone: the daemon does not wait for 1 GB to arrive."""
    d = env.daemon
    before = len(d.find("webhook.rejected"))
    headers = {**sign(b"{}"), "Content-Length": "1000000000"}
    reader, writer = await raw_post(d.webhook_url, headers)
    try:
        async with asyncio.timeout(5):
            status_line = await reader.readline()
            head_bytes = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head_bytes)[1])  # type: ignore[index]
            answer = orjson.loads(await reader.readexactly(length))
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 413 ")
    assert answer["error"]
    env.outcomes["rejected_413"] += 1
    line = (await d.wait_for(lambda: d.find("webhook.rejected")[before:], timeout_s=5))[0]
    assert line["status"] == 413


# -- 415 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", "json", None],
    ids=["text", "form", "jsonx", "bare-json", "missing"],
)
async def test_wrong_content_type_is_415(env: Env, content_type: str | None) -> None:
    body = completed("rec-x")
    headers = sign(body)
    if content_type is None:
        del headers["Content-Type"]
        await expect_rejected(env, 415, body, headers, skip_auto_headers=["Content-Type"])
    else:
        headers["Content-Type"] = content_type
        await expect_rejected(env, 415, body, headers)


async def test_json_content_type_with_parameters_is_fine(env: Env) -> None:
    body = orjson.dumps({"type": "charset.check"})
    headers = {**sign(body), "Content-Type": "application/json; charset=utf-8"}
    code, doc = await env.post(body, headers)
    assert (code, doc) == (200, {"status": "ignored"})


# -- what never reaches the handler, and clients that go away -------------------------


async def test_client_hanging_up_mid_body_is_not_an_internal_error(env: Env) -> None:
    d = env.daemon
    before = len(d.find("webhook.rejected"))
    body = completed("rec-x")
    headers = {**sign(body), "Content-Length": str(len(body))}
    _, writer = await raw_post(d.webhook_url, headers, body[:10])
    await asyncio.sleep(0.2)  # the handler is now waiting for the rest
    writer.close()
    line = (await d.wait_for(lambda: d.find("webhook.rejected")[before:], timeout_s=5))[0]
    assert line["status"] == 400, line
    env.outcomes["rejected_400"] += 1


async def test_a_sender_stalling_mid_body_gets_408(env: Env) -> None:
    d = env.daemon
    body = completed("rec-slow")
    before = env.cxone()
    headers = {**sign(body), "Content-Length": str(len(body))}
    reader, writer = await raw_post(d.webhook_url, headers, body[:10])
    try:
        async with asyncio.timeout(10):
            status_line = await reader.readline()
    finally:
        writer.close()
    assert status_line.split()[1] == b"408", status_line
    line = await d.wait_event("webhook.rejected", status=408)
    assert line["reason"] == "request body not received in time"
    assert env.cxone() == before
    env.outcomes["rejected_408"] += 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/webhooks/cxone"),
        ("PUT", "/webhooks/cxone"),
        ("POST", "/webhooks/other"),
        ("POST", "/"),
    ],
)
async def test_other_routes_and_methods(env: Env, method: str, path: str) -> None:
    body = completed("rec-x")
    before = env.cxone()
    url = env.daemon.webhook_url.replace("/webhooks/cxone", path)
    async with env.session.request(method, url, data=body, headers=sign(body)) as resp:
        assert resp.status in (404, 405)
        env.statuses.append(resp.status)
    assert env.cxone() == before


async def test_broken_chunked_framing_is_a_4xx(env: Env) -> None:
    headers = {**sign(b"{}"), "Transfer-Encoding": "chunked"}
    reader, writer = await raw_post(env.daemon.webhook_url, headers, b"zz\r\n")
    try:
        async with asyncio.timeout(5):
            status_line = await reader.readline()
    finally:
        writer.close()
    assert re.match(rb"HTTP/1\.[01] 4\d\d ", status_line), status_line


# -- the parser alone: anything JSON gives a job, None or EventError ---------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_timestamps = st.one_of(
    _json,
    st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0999-01-01"]),
)
_RECORDING_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,5}", fullmatch=True)
_data = st.fixed_dictionaries(
    {},
    optional={
        "recordingId": _RECORDING_ID | _json,
        "contactId": _json,
        "codec": st.sampled_from(["opus", "pcm", "mp3"]) | _json,
        "offsets": st.lists(st.integers(min_value=-1, max_value=100)) | _json,
    },
)
# Valid but for the timestamp, so the date logic is reached on every example.
_valid = st.fixed_dictionaries(
    {
        "type": st.just("recording.completed"),
        "data": st.fixed_dictionaries({"recordingId": _RECORDING_ID}),
        "timestamp": _timestamps,
    }
)


@settings(max_examples=400, deadline=None)
@given(
    doc=st.one_of(
        _json,
        _valid,
        st.fixed_dictionaries(
            {"type": st.just("recording.completed"), "data": _data | _json},
            optional={"timestamp": _timestamps},
        ),
    )
)
def _parse_event_property(doc: Any) -> None:
    received = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    try:
        job = parse_event(doc, "msg_1", received)
    except EventError:
        return
    if job is None:
        assert isinstance(doc, dict) and doc["type"] != "recording.completed"
        return
    assert isinstance(job, JobRequest)
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}", job.day), job.day
    assert "/" not in job.recording_id and not job.recording_id.startswith(".")


async def test_parse_event_answers_job_none_or_event_error() -> None:
    # Called directly, a @given function runs its search; async only for the module mark.
    _parse_event_property()


# -- after the barrage ---------------------------------------------------------------


async def test_admin_endpoints_after_the_barrage(env: Env) -> None:
    admin = env.daemon.admin_url
    async with env.session.get(f"{admin}/healthz") as resp:
        assert resp.status == 200
    async with env.session.get(f"{admin}/readyz") as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["status"] == "ready"
    async with env.session.get(f"{admin}/metrics") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    webhooks = {
        s.labels["outcome"]: s.value
        for s in families["cxstream_webhooks"].samples
        if s.name == "cxstream_webhooks_total"
    }
    assert webhooks == {k: float(v) for k, v in env.outcomes.items()}
    for outcome in (
        "accepted",
        "duplicate",
        "ignored",
        "rejected_400",
        "rejected_401",
        "rejected_413",
        "rejected_415",
    ):
        assert webhooks.get(outcome, 0) > 0, outcome
    assert families["cxstream_jobs_queued"].samples[0].value == 0
    completed_total = {
        s.labels["outcome"]: s.value
        for s in families["cxstream_recordings"].samples
        if s.name == "cxstream_recordings_total"
    }
    assert completed_total["completed"] == len(env.daemon.find("recording.completed"))


class _LockedJournal:
    """A journal whose every transaction fails, as SQLite's does when it is locked."""

    async def counts(self) -> dict[str, int]:
        raise JournalError("OperationalError: database is locked")

    async def healthy(self) -> bool:
        return False


async def test_metrics_survive_a_journal_that_cannot_answer(env: Env, tmp_path: Path) -> None:
    # In process: holding the real journal's lock costs 5 s per request.
    config = load(write_config(tmp_path, env.sim), {})
    config.storage.dir.mkdir(parents=True)
    main = web.Application()
    main[CONFIG] = config
    main[JOURNAL] = _LockedJournal()  # type: ignore[assignment]
    main[LIFECYCLE] = Lifecycle(listening=True)
    main[METRICS] = metrics = Metrics()
    main[GUARD] = DiskGuard((config.storage.dir,), 0, open_audit("-")[0], metrics)
    metrics.webhooks.labels(outcome="accepted").inc()
    async with TestClient(TestServer(build_admin_app(main))) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
        assert any(
            s.labels.get("outcome") == "accepted" and s.value == 1
            for s in families["cxstream_webhooks"].samples
        )
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["checks"] == {
            "listening": True,
            "journal": False,
            "storage": True,
            "disk_space": True,
        }
        assert (await client.get("/healthz")).status == 200


async def test_no_500_and_no_call_to_cxone_for_rejections(env: Env) -> None:
    assert env.statuses and all(s < 500 for s in env.statuses), Counter(env.statuses)
    # Every CXone call belongs to a recording that was accepted.
    accepted = {e["recording_id"] for e in env.daemon.find("webhook.accepted")}
    for call in env.cxone_calls:
        if call.startswith("/api/"):
            assert call.split("/")[4].split("?")[0] in accepted, call


SECRETS = [
    WEBHOOK_SECRET,
    WEBHOOK_SECRET.removeprefix("whsec_"),
    CLIENT_SECRET,
    ARCHIVE_SECRET,
    ARCHIVE_SECRET.removeprefix("whsec_"),
    base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode(),  # the Basic auth
]


def _check_trail(d: Daemon, secrets: list[str]) -> None:
    """Every stdout line one JSON object with ts, level, event; no secret anywhere."""
    assert d.raw_lines
    for raw in d.raw_lines:
        text = raw.decode()
        for secret in secrets:
            assert secret not in text, f"secret in audit line: {text}"
        assert "Bearer " not in text and "authorization" not in text.lower()
        line = orjson.loads(raw)
        assert isinstance(line, dict)
        assert list(line)[:3] == ["ts", "level", "event"], line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", line["ts"]), line
        assert line["level"] in ("debug", "info", "warning", "error", "critical"), line
        assert isinstance(line["event"], str) and line["event"], line
    stderr = d.stderr.decode()
    assert "webhook handler failed" not in stderr, stderr[-3000:]
    # Not even aiohttp's own, for the deliberately broken chunked framing above:
    # a client's malformed request is one warning line, never a stack.
    assert "Traceback" not in stderr, stderr[-3000:]
    for secret in secrets:
        assert secret not in stderr


async def test_audit_trail_is_clean(env: Env) -> None:
    await asyncio.sleep(0.2)  # let the reader drain the pipe
    assert env.tokens, "the daemon never fetched a token: the scan would prove nothing"
    signatures = [s.split(",", 1)[1] for s in env.signatures if "," in s and len(s) > 20]
    assert signatures
    _check_trail(env.daemon, [*SECRETS, *env.tokens, *signatures])


# -- 503: a second daemon, stopped on purpose -----------------------------------------


async def test_503_when_the_journal_cannot_record_and_when_shutting_down(
    env: Env, tmp_path: Path
) -> None:
    """Both 503 rows, made deterministic by holding the journal's write lock.

    With the lock held, the enqueue waits out SQLite's busy timeout (5 s) and
    fails: 503. A stalled stream keeps the only worker busy, so on SIGTERM its
    checkpoint waits on the same lock and the daemon sits in its draining
    phase, listener still open, until the lock is released: 503 again.
    """
    env.sim.state.add_recording(
        recording_from_dict(
            {
                "id": "rec-stuck",
                "segments": 1,
                "codecs": ["opus"],
                "faults": [{"kind": "stall", "after_bytes": 1000}],
            }
        )
    )
    config = write_config(
        tmp_path,
        env.sim,
        streams={"concurrency": 1, "idle_timeout_s": 60.0},
        archive={"url": ""},
    )
    d = await Daemon(config).start()
    lock: sqlite3.Connection | None = None
    try:
        async with aiohttp.ClientSession() as session:
            code, _ = await d.post(session, completed("rec-stuck"))
            assert code == 202
            await env.sim.state.wait_for(
                lambda: env.sim.served("rec-stuck").bytes_served > 0, timeout_s=10
            )

            def take_lock() -> sqlite3.Connection:
                db = sqlite3.connect(
                    tmp_path / "state" / "journal.sqlite3",
                    timeout=10,
                    isolation_level=None,
                    check_same_thread=False,
                )
                db.execute("BEGIN IMMEDIATE")
                return db

            lock = await asyncio.to_thread(take_lock)

            async def post(body: bytes) -> tuple[int, dict[str, Any], str | None]:
                async with session.post(d.webhook_url, data=body, headers=sign(body)) as resp:
                    return resp.status, await resp.json(), resp.headers.get("Retry-After")

            code, doc, retry_after = await post(completed("rec-journal"))
            assert code == 503 and retry_after is not None and int(retry_after) > 0
            assert doc["error"] and doc["reason"] == "journal cannot record the job"
            await d.wait_event("webhook.rejected", status=503, reason=doc["reason"])

            await d.signal(signal.SIGTERM)
            await d.wait_event("daemon.stopping")
            code, doc, retry_after = await post(completed("rec-draining"))
            assert code == 503 and retry_after is not None and int(retry_after) > 0
            assert doc["error"] and doc["reason"] == "shutting down"
            await d.wait_event("webhook.rejected", status=503, reason="shutting down")
        lock.execute("ROLLBACK")
        lock.close()
        lock = None
        assert await d.stop() == 0
    finally:
        if lock is not None:
            lock.close()
        if d.proc is not None and d.proc.returncode is None:
            await d.kill()
    # Neither 503 left a job behind, and neither reached CXone.
    assert not d.find("webhook.accepted", recording_id="rec-journal")
    assert not d.find("webhook.accepted", recording_id="rec-draining")
    assert "rec-journal" not in env.sim.state.recording_stats
    assert not [c for c in env.cxone_calls if "rec-journal" in c or "rec-draining" in c]
    _check_trail(d, [*SECRETS, *env.tokens])
    assert "Traceback" not in d.stderr.decode()
