"""docs/audit.schema.json: valid itself, true to every line the daemon writes, strict on secrets.

Other tests may check their own audit lines with ``audit_validator()``.
"""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from jsonschema import Draft202012Validator

import cxstream
from cxstream.audit.log import close_audit, open_audit
from cxstream.sim.server import SimServer
from tests.conftest import StartDaemon
from tests.harness import (
    ARCHIVE_SECRET,
    CLIENT_SECRET,
    WEBHOOK_SECRET,
    completed,
    sign,
)
from tests.schema import SCHEMA_PATH, audit_validator

PACKAGE = Path(cxstream.__file__).resolve().parent
# Specified in the schema while the daemon was still gaining them: the schema may
# run ahead of the code by these, never behind it.
PENDING = frozenset({"recording.quarantined", "archive.backlog"})
FORBIDDEN = (
    "token",
    "access_token",
    "secret",
    "client_secret",
    "authorization",
    "signature",
    "webhook-signature",
    "webhook_signature",
    "password",
    "cookie",
)
SHA = "4b64d9cce11ab37f610e9f2cdc772cc16ebee69b6b33b989e64aa48fa459eafe"
TS = "2026-11-24T04:33:58.698955Z"


def _line(level: str, event: str, **fields: Any) -> dict[str, Any]:
    return {"ts": TS, "level": level, "event": event, **fields}


# One line per event as the daemon writes it (copied from real trails, paths aside).
VALID: dict[str, dict[str, Any]] = {
    "daemon.started": _line(
        "info",
        "daemon.started",
        version="0.1.0",
        webhook="127.0.0.1:8080",
        admin="127.0.0.1:9090",
        concurrency=4,
    ),
    "daemon.stopping": _line("info", "daemon.stopping", inflight_webhooks=0),
    "daemon.stopped": _line("info", "daemon.stopped"),
    "journal.opened": _line(
        "info", "journal.opened", path="/var/lib/cxstream/journal.sqlite3", requeued=0
    ),
    "webhook.accepted": _line(
        "info",
        "webhook.accepted",
        webhook_id="msg_demo_rec-0004",
        recording_id="rec-0004",
        contact_id="c-04",
        codec=None,
        offsets=None,
        journal_ms=2.23,
        scope="recording",
        original_name=None,
        auth="standard-webhooks",
        peer="127.0.0.1",
    ),
    "webhook.duplicate": _line(
        "info",
        "webhook.duplicate",
        webhook_id="msg_demo_rec-0004",
        recording_id="rec-0004",
        auth="standard-webhooks",
        peer="127.0.0.1",
    ),
    "webhook.ignored": _line(
        "info",
        "webhook.ignored",
        webhook_id="msg_2b1",
        type="recording.deleted",
        auth="standard-webhooks",
        peer="10.1.2.3",
    ),
    "webhook.rejected": _line(
        "warning",
        "webhook.rejected",
        status=401,
        reason="no matching signature found",
        webhook_id="msg_2b2",
        remote="10.1.2.3",
        auth="standard-webhooks",
        peer="10.1.2.3",
    ),
    "recording.started": _line(
        "info",
        "recording.started",
        recording_id="rec-0004",
        codec="opus",
        segments=4,
        resumed_bytes=0,
        attempt=1,
    ),
    "stream.request": _line(
        "info",
        "stream.request",
        recording_id="rec-0004",
        offsets="0,15,30",
        codec="opus",
        range_start=30000,
        attempt=2,
    ),
    "stream.stalled": _line(
        "warning",
        "stream.stalled",
        recording_id="rec-0004",
        offsets="0,15,30",
        offset=30000,
        idle_s=2.0,
    ),
    "stream.resumed": _line(
        "info", "stream.resumed", recording_id="rec-0004", offset=30000, status=206
    ),
    "stream.retry": _line(
        "warning",
        "stream.retry",
        recording_id="rec-0003",
        status=503,
        error="storage_timeout",
        delay_s=1.0,
        attempt=2,
    ),
    "recording.completed": _line(
        "info",
        "recording.completed",
        recording_id="rec-0004",
        bytes=98216,
        sha256=SHA,
        ttfb_ms=2.5,
        duration_ms=2017.5,
        attempts=2,
        path="/srv/recordings/2026/11/24/rec-0004.opus",
        codec="opus",
    ),
    "recording.failed": _line(
        "error",
        "recording.failed",
        recording_id="rec-missing",
        error="recording_not_found",
        status=404,
        attempts=1,
    ),
    "recording.quarantined": _line(
        "warning",
        "recording.quarantined",
        recording_id="rec-0009",
        reason="repr_digest_mismatch",
        path="/var/lib/cxstream/quarantine/rec-0009.20261124T043358964841Z.opus",
        bytes=171878,
        bytes_dropped=False,
        evicted=0,
    ),
    "recording.conflict": _line(
        "warning",
        "recording.conflict",
        recording_id="rec-0004",
        path="/srv/recordings/2026/11/24/rec-0004.opus",
        published="/srv/recordings/2026/11/24/rec-0004.conflict-4b64d9cce11a.opus",
        sha256=SHA,
        existing_sha256="0" * 64,
    ),
    "archive.delivered": _line(
        "info",
        "archive.delivered",
        recording_id="rec-0004",
        webhook_id="msg_a505abac17154f08a3f2b438a0626168",
        status=204,
        attempts=1,
        latency_ms=1.0,
    ),
    "archive.retry": _line(
        "warning",
        "archive.retry",
        recording_id="rec-0004",
        webhook_id="msg_a505abac17154f08a3f2b438a0626168",
        status=None,
        error="unreachable: ClientConnectorError",
        attempts=1,
        delay_s=0.734,
        latency_ms=3.1,
    ),
    "archive.backlog": _line("warning", "archive.backlog", pending=3, oldest_age_s=42.5),
    "recording.codec_fallback": _line(
        "warning",
        "recording.codec_fallback",
        recording_id="rec-0406",
        codec="opus",
        next_codec="pcm",
        status=406,
        error="codec_unavailable",
    ),
    "job.enqueued": _line(
        "info", "job.enqueued", recording_id="c-77", job="rec-a1", ref="a1", outcome="accepted"
    ),
    "recording.expanded": _line(
        "info", "recording.expanded", recording_id="c-77", jobs=["rec-a1", "rec-a2"]
    ),
    "recording.interrupted": _line(
        "warning", "recording.interrupted", recording_id="rec-1", reason="disk_full"
    ),
    "storage.paused": _line(
        "warning",
        "storage.paused",
        reason="low_space",
        path="/var/lib/cxstream/recordings",
        free_bytes=1024,
        min_free_bytes=268435456,
    ),
    "storage.resumed": _line("info", "storage.resumed", paused_s=12.5),
    "store.opened": _line(
        "info",
        "store.opened",
        store="s3://cx-archive/recordings/",
        spool="/var/lib/cxstream/state/spool",
        stale_parts=2,
    ),
    "store.paused": _line(
        "warning",
        "store.paused",
        store="s3://cx-archive/recordings/",
        error="s3_unreachable: HeadObject 2026/11/24/rec-1.opus: EndpointConnectionError",
    ),
    "store.resumed": _line(
        "info", "store.resumed", store="s3://cx-archive/recordings/", paused_s=3.2
    ),
    "ratelimit.waiting": _line("info", "ratelimit.waiting", wait_s=2.0, rate_per_s=0.5),
}

# Other shapes the code writes: the second call site of an event, the other branch.
VARIANTS: list[dict[str, Any]] = [
    # fetcher/pool.py: the object store could not take a verified recording.
    _line("warning", "recording.interrupted", recording_id="rec-1", reason="store"),
    # fetcher/job.py, the last codec given up: nothing left to try.
    _line(
        "warning",
        "recording.codec_fallback",
        recording_id="rec-7",
        codec="pcm",
        next_codec=None,
        status=406,
        error="codec_unavailable",
    ),
    _line(
        "warning",
        "stream.retry",
        recording_id="rec-7",
        status=None,
        error="connection_lost: ClientPayloadError",
        delay_s=0.0,
        attempt=3,
    ),
    # fetcher/pool.py, a job that crashed: no HTTP status.
    _line(
        "error",
        "recording.failed",
        recording_id="rec-7",
        error="internal_error: KeyError",
        status=None,
        attempts=3,
    ),
    _line(
        "error", "recording.failed", recording_id="rec-7", error="stalled", status=None, attempts=6
    ),
    _line(
        "info",
        "stream.resumed",
        recording_id="rec-8",
        offset=0,
        status=200,
        range_ignored=True,
    ),
    _line(
        "warning",
        "webhook.rejected",
        status=413,
        reason="body over 1048576 bytes",
        webhook_id=None,
        remote=None,
        auth="basic",
        peer=None,
    ),
    _line(
        "warning",
        "webhook.rejected",
        status=403,
        reason="peer address not allowed",
        webhook_id=None,
        remote="::ffff:192.0.2.7",
        auth="bearer",
        peer="192.0.2.7",
    ),
    _line(
        "info",
        "webhook.accepted",
        webhook_id="msg_1",
        recording_id="rec-9",
        contact_id=None,
        codec="pcm",
        offsets=[15, 45, 60],
        journal_ms=0.41,
        scope="recording",
        original_name=None,
        auth="standard-webhooks",
        peer="::1",
    ),
    # ingress, an unsigned (bearer/basic) webhook for a whole contact, its id mapped.
    _line(
        "info",
        "webhook.accepted",
        webhook_id=None,
        recording_id="c_77-9f86d081884c7d65",
        contact_id="c/77",
        codec=None,
        offsets=None,
        journal_ms=1.2,
        scope="contact",
        original_name="c/77",
        auth="bearer",
        peer="10.0.0.5",
    ),
    _line(
        "info",
        "webhook.duplicate",
        webhook_id=None,
        recording_id="c-77",
        auth="basic",
        peer="10.0.0.5",
    ),
    _line(
        "info",
        "recording.completed",
        recording_id="rec-9",
        bytes=480044,
        sha256=SHA,
        ttfb_ms=None,
        duration_ms=12.0,
        attempts=1,
        path="/srv/recordings/2026/11/24/rec-9.wav",
        codec="pcm",
    ),
    # A planted link (or a directory) at the final name has no sha256.
    {**VALID["recording.conflict"], "existing_sha256": None},
    # Low on space: only the reason file was kept.
    {
        **VALID["recording.quarantined"],
        "path": "/var/lib/cxstream/quarantine/rec-0009.20261124T043358964841Z.opus.reason.json",
        "bytes": 0,
        "bytes_dropped": True,
        "evicted": 2,
    },
    # The fraction is left out when the clock reads exactly .000000.
    {**VALID["daemon.stopped"], "ts": "2026-11-24T05:00:00Z"},
    # New fields must not break anything downstream.
    {**VALID["recording.completed"], "segments_refetched": 1, "labels": {"site": "eu"}},
    # What the redactor leaves of a secret nested in a value.
    {**VALID["daemon.stopping"], "request": {"headers": {"Authorization": "[redacted]"}}},
    {**VALID["stream.retry"], "error": "http_401: Bearer [redacted]"},
]

# Fields a call site may leave out; every other field of VALID is always written.
OPTIONAL = {("recording.failed", "status")}


def _errors(line: dict[str, Any]) -> list[str]:
    return [e.message for e in audit_validator().iter_errors(line)]


def _schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def _schema_events() -> set[str]:
    return set(_schema()["properties"]["event"]["enum"])


def _emitted() -> dict[str, set[str]]:
    """Every audit event the package writes, with the keyword fields of its call sites."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if "sim" in path.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("info", "warning", "error")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                continue
            name = node.args[0].value
            # stdlib logging messages have spaces; audit event names are dotted words.
            if "." not in name or " " in name or "%" in name:
                continue
            found.setdefault(name, set()).update(k.arg for k in node.keywords if k.arg)
    return found


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(_schema())
    assert _schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_every_event_the_daemon_emits_is_in_the_schema_and_vice_versa() -> None:
    emitted, known = set(_emitted()), _schema_events()
    assert {"recording.completed", "stream.stalled", "daemon.started"} <= emitted
    assert emitted - known == set(), "new audit event: add it to docs/audit.schema.json"
    assert known - emitted <= PENDING, "the schema lists events nothing emits"
    assert set(VALID) == known


def test_every_field_the_daemon_writes_is_declared_for_its_event() -> None:
    defs = _schema()["$defs"]
    for event, fields in _emitted().items():
        declared = set(defs[f"event:{event}"]["properties"])
        assert fields <= declared, f"{event}: document {sorted(fields - declared)}"


@pytest.mark.parametrize("event", sorted(VALID))
def test_a_real_line_of_each_event_validates(event: str) -> None:
    assert _errors(VALID[event]) == []


@pytest.mark.parametrize("line", VARIANTS, ids=lambda line: line["event"])
def test_every_variant_the_code_writes_validates(line: dict[str, Any]) -> None:
    assert _errors(line) == []


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (event, field)
        for event, line in sorted(VALID.items())
        for field in line
        if (event, field) not in OPTIONAL
    ],
)
def test_dropping_any_field_the_code_always_writes_fails(event: str, field: str) -> None:
    line = {k: v for k, v in VALID[event].items() if k != field}
    assert _errors(line)


@pytest.mark.parametrize("key", [*FORBIDDEN, "Authorization", "ACCESS_TOKEN", "Cookie"])
def test_a_secret_bearing_key_fails_on_any_event(key: str) -> None:
    for line in (VALID["daemon.stopped"], VALID["recording.completed"]):
        assert _errors({**line, key: "[redacted]"})


@pytest.mark.parametrize(
    "value",
    [
        {"headers": {"authorization": "Bearer eyJhbGciOi"}},
        {"headers": [{"Token": "abc"}]},
        "http_401: Bearer eyJhbGciOiJIUzI1NiJ9",
        "whsec_ZGVtby13ZWJob29rLXNlY3JldC0wMTIz",
    ],
)
def test_a_secret_value_at_any_depth_fails(value: Any) -> None:
    assert _errors({**VALID["stream.retry"], "detail": value})


@pytest.mark.parametrize(
    "broken",
    [
        {"ts": None},
        {"ts": "2026-11-24 04:33:58.698955Z"},
        {"ts": "2026-11-24T04:33:58.698955+00:00"},
        {"ts": "2026-11-24T04:33:58"},
        {"level": "debug"},
        {"event": "recording.archived"},
        {"event": "Recording.Completed"},
        {"bytes": "98216"},
        {"bytes": -1},
        {"bytes": 9.5},
        {"bytes": None},
        {"sha256": SHA.upper()},
        {"sha256": SHA[:63]},
        {"ttfb_ms": "fast"},
        {"attempts": 0},
        {"attempts": True},
        {"codec": "mp3"},
        {"recording_id": ""},
        {"path": 7},
    ],
    ids=repr,
)
def test_a_wrong_value_fails(broken: dict[str, Any]) -> None:
    assert _errors({**VALID["recording.completed"], **broken})


@pytest.mark.parametrize("field", ["ts", "level", "event"])
def test_a_line_without_ts_level_or_event_fails(field: str) -> None:
    line = copy.deepcopy(VALID["daemon.started"])
    del line[field]
    assert _errors(line)


@pytest.mark.parametrize(
    ("event", "broken"),
    [
        ("stream.request", {"offsets": "[0,15,30]"}),
        ("stream.request", {"offsets": [0, 15, 30]}),
        ("stream.retry", {"status": "503"}),
        ("stream.retry", {"delay_s": -1}),
        ("stream.resumed", {"status": 200}),
        ("stream.resumed", {"status": 416}),
        ("webhook.accepted", {"offsets": []}),
        ("webhook.accepted", {"offsets": [0, -15]}),
        ("webhook.rejected", {"status": 202}),
        ("webhook.rejected", {"auth": "none"}),
        ("webhook.accepted", {"scope": "conversation"}),
        ("webhook.accepted", {"auth": "Bearer"}),
        ("webhook.duplicate", {"peer": 10}),
        ("archive.delivered", {"status": 500}),
        ("archive.delivered", {"status": None}),
        ("archive.backlog", {"pending": 2.5}),
        ("recording.quarantined", {"bytes": "1"}),
        ("daemon.started", {"concurrency": 0}),
    ],
    ids=repr,
)
def test_event_specific_types_are_enforced(event: str, broken: dict[str, Any]) -> None:
    assert _errors({**VALID[event], **broken})


def test_the_real_pipeline_writes_valid_lines_whatever_the_caller_passes(tmp_path: Path) -> None:
    """Every VALID line through open_audit, with careless secret-bearing extras added."""
    path = tmp_path / "audit.ndjson"
    audit, owned = open_audit(str(path), secrets=[CLIENT_SECRET])
    try:
        for line in VALID.values():
            fields = {k: v for k, v in line.items() if k not in ("ts", "level", "event")}
            getattr(audit, line["level"])(
                line["event"],
                **fields,
                token="eyJhbGciOiJIUzI1NiJ9.payload",
                Authorization="Bearer eyJhbGciOiJIUzI1NiJ9",
                request={"headers": {"webhook-signature": "v1,abc=", "cookie": "sid=1"}},
                detail=f"token endpoint said Bearer abc and {CLIENT_SECRET}",
            )
    finally:
        close_audit(owned)
    raw = path.read_bytes()
    assert b"eyJhbGciOiJIUzI1NiJ9" not in raw and CLIENT_SECRET.encode() not in raw
    written = [orjson.loads(x) for x in raw.splitlines()]
    assert [x["event"] for x in written] == list(VALID)
    for line in written:
        assert list(line)[:3] == ["ts", "level", "event"]
        assert _errors(line) == [], line


async def test_every_line_of_a_real_daemon_run_validates(
    sim: SimServer, start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    """The daemon against the simulator, through stalls, fallbacks, failures and refusals."""
    recordings = {
        "rec-stall": [{"kind": "stall", "after_bytes": 30000, "on": [1]}],
        "rec-norange": [
            {"kind": "stall", "after_bytes": 30000, "on": [1]},
            {"kind": "ignore_range", "on": [2]},
        ],
        "rec-406": [{"kind": "codec_unavailable", "on": [1]}],
        "rec-busy": [{"kind": "status", "status": 503, "retry_after": 0, "times": 1}],
        # Never verifies: given up, and (where the daemon quarantines) its bytes set aside.
        "rec-rotten": [{"kind": "bad_digest"}],
    }
    for rid, faults in recordings.items():
        sim.add_recording({"id": rid, "segments": 5, "codecs": ["opus", "pcm"], "faults": faults})
    sim.state.archive_fail_remaining = 1  # one announcement is refused, then retried
    daemon = await start_daemon(streams={"idle_timeout_s": 0.5, "max_attempts": 3})
    for rid in recordings:
        assert (await daemon.post(http, completed(rid, contactId=f"c-{rid}")))[0] == 202
    missing = completed("rec-missing", offsets=[0, 15])
    headers = sign(missing)
    assert (await daemon.post(http, missing, headers))[0] == 202
    assert (await daemon.post(http, missing, headers))[0] == 200
    other = orjson.dumps({"type": "recording.deleted", "data": {}})
    assert (await daemon.post(http, other))[0] == 200
    forged = completed("rec-stall")
    assert (await daemon.post(http, forged, sign(forged, secret=ARCHIVE_SECRET)))[0] == 401

    await daemon.wait_for(
        lambda: (
            len(daemon.find("archive.delivered")) == len(recordings) - 1
            and len(daemon.find("recording.failed")) == 2
        ),
        timeout_s=60,
    )
    assert await daemon.stop() == 0

    seen = {line.get("event") for line in daemon.events}
    assert seen >= {
        "daemon.started",
        "journal.opened",
        "webhook.accepted",
        "webhook.duplicate",
        "webhook.ignored",
        "webhook.rejected",
        "recording.started",
        "stream.request",
        "stream.stalled",
        "stream.resumed",
        "stream.retry",
        "recording.completed",
        "recording.failed",
        "archive.delivered",
        "archive.retry",
        "daemon.stopping",
        "daemon.stopped",
    }
    assert daemon.find("stream.resumed", status=200, range_ignored=True)
    assert daemon.find("recording.codec_fallback", status=406, codec="opus", next_codec="pcm")
    for line in daemon.events:
        assert _errors(line) == [], line
    raw = b"".join(daemon.raw_lines)
    for secret in (CLIENT_SECRET, WEBHOOK_SECRET, ARCHIVE_SECRET):
        assert secret.encode() not in raw
