"""Contract §2's answer table, row by row, for a signed (``standard-webhooks``) caller.

In process (tests/ingress.py): the daemon's own app on a loopback port, a
real journal in a temporary directory, the real audit pipeline; no workers
run. Each test has an ingress of its own. Every refusal is checked the same
way (``expect_rejected``): the status and its reason, one ``webhook.rejected``
line with the same reason, nothing journaled, no credential or signature in
the answer or the trail. The other modes' rows are tests/test_auth.py's.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.harness import completed, sign, sign_raw
from tests.ingress import Ingress, expect_rejected, ingress

LIMIT = 64 * 1024
OTHER_SECRET = "whsec_" + base64.b64encode(b"not-the-daemon-secret-0123456789").decode()


@pytest.fixture
async def ing(tmp_path: Path) -> AsyncIterator[Ingress]:
    async with ingress(tmp_path) as one:
        yield one


# -- 200 ignored ------------------------------------------------------------------------


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
async def test_other_types_are_ignored(ing: Ingress, doc: dict[str, Any]) -> None:
    body = orjson.dumps(doc)
    headers = sign_raw(body)
    code, answer, _ = await ing.post(body, headers)
    assert (code, answer) == (200, {"status": "ignored"})
    (line,) = ing.lines("webhook.ignored")
    assert line["webhook_id"] == headers["webhook-id"] and line["type"] == doc["type"]
    assert ing.jobs() == []


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
async def test_bad_body_is_400(ing: Ingress, body: bytes) -> None:
    line = await expect_rejected(ing, 400, body, sign_raw(body))
    assert "rec\u0000x" not in line["reason"]


async def test_non_utf8_body_is_400(ing: Ingress) -> None:
    body = b'{"type": "recording.completed", "data": {"recordingId": "rec-\xff\xfe"}}'
    line = await expect_rejected(ing, 400, body, sign_raw(body))
    assert "utf-8" in line["reason"].lower()


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
async def test_bad_signature_is_401(ing: Ingress, name: str) -> None:
    # Signed now, not at import (the module-level dict only names the cases), so
    # a slow run cannot age a case out of the ±5 minute tolerance by accident.
    headers = _headers_401()[name]
    await expect_rejected(ing, 401, completed("rec-x"), headers)


async def test_tampered_body_is_401(ing: Ingress) -> None:
    headers = sign(completed("rec-ok"))
    await expect_rejected(ing, 401, completed("rec-x"), headers)


async def test_signature_list_with_one_good_entry_is_accepted(ing: Ingress) -> None:
    # Standard Webhooks: several space-separated signatures, any one may match
    # (secret rotation). An ignored type keeps the journal out of it.
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
    code, doc, _ = await ing.post(body, headers)
    assert (code, doc) == (200, {"status": "ignored"})


# -- 413 --------------------------------------------------------------------------------


def _padded(size: int, doc: dict[str, Any]) -> bytes:
    body = orjson.dumps(doc)
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def test_body_over_64k_with_content_length_is_413(ing: Ingress) -> None:
    body = _padded(LIMIT + 1, {"type": "recording.completed", "data": {"recordingId": "rec-x"}})
    assert len(body) == LIMIT + 1
    await expect_rejected(ing, 413, body, sign_raw(body))


async def test_body_over_64k_chunked_is_413(ing: Ingress) -> None:
    body = _padded(LIMIT + 100, {"type": "recording.completed", "data": {"recordingId": "rec-x"}})

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    # An async generator: aiohttp sends it chunked, with no Content-Length.
    await expect_rejected(ing, 413, chunks(), sign_raw(body))


async def test_body_of_exactly_64k_is_not_413(ing: Ingress) -> None:
    body = _padded(LIMIT, {"type": "padding.check"})
    assert len(body) == LIMIT
    code, doc, _ = await ing.post(body, sign_raw(body))
    assert (code, doc) == (200, {"status": "ignored"})


# -- 415 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", "json", None],
    ids=["text", "form", "jsonx", "bare-json", "missing"],
)
async def test_wrong_content_type_is_415(ing: Ingress, content_type: str | None) -> None:
    body = completed("rec-x")
    headers = sign_raw(body)
    if content_type is None:
        del headers["Content-Type"]
        await expect_rejected(ing, 415, body, headers, skip_auto_headers=["Content-Type"])
    else:
        headers["Content-Type"] = content_type
        await expect_rejected(ing, 415, body, headers)


async def test_json_content_type_with_parameters_is_fine(ing: Ingress) -> None:
    body = orjson.dumps({"type": "charset.check"})
    headers = {**sign_raw(body), "Content-Type": "application/json; charset=utf-8"}
    code, doc, _ = await ing.post(body, headers)
    assert (code, doc) == (200, {"status": "ignored"})


# -- 503 --------------------------------------------------------------------------------


async def test_a_journal_locked_by_another_connection_is_503_with_retry_after(ing: Ingress) -> None:
    """SQLITE_BUSY for real: another connection holds the write lock past the
    journal's busy timeout (5 s), as an operator's sqlite3 shell in a write
    transaction would. (A closed journal is tests/test_auth.py's.)"""
    db = sqlite3.connect(ing.journal.path, timeout=10, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        body = completed("rec-x")
        line = await expect_rejected(ing, 503, body, sign_raw(body))
        db.execute("ROLLBACK")
    finally:
        db.close()
    assert line["reason"] == "journal cannot record the job"
    # The lock gone, the same recording is accepted: nothing was half-recorded.
    code, _, _ = await ing.post(body, sign_raw(body))
    assert code == 202 and len(ing.jobs()) == 1
