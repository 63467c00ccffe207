"""``POST /webhooks/cxone``: every row of contract §2's answer table, and no other.

Order of checks: cheap refusals first (draining, type, size), then the
signature over the exact bytes received, then the body. Nothing unsigned is
parsed, and nothing rejected reaches the journal or CXone.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import UTC, datetime

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from cxstream.ingress.event import EventError, parse_event
from cxstream.journal import Enqueued, JournalError
from cxstream.keys import AUDIT, CONFIG, JOURNAL, LIFECYCLE, METRICS, POOL

_WEBHOOK_ID = re.compile(r"[\x21-\x7e]{1,256}")
_SIGNATURE = re.compile(r"v\d+,[A-Za-z0-9+/=]+( v\d+,[A-Za-z0-9+/=]+)*")
RETRY_AFTER_S = "5"
SIGNER = web.AppKey("signer", Webhook)


def _json(code: int, **body: object) -> web.Response:
    headers = {"Retry-After": RETRY_AFTER_S} if code == 503 else None
    return web.Response(
        status=code, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _reject(request: web.Request, status: int, reason: str) -> web.Response:
    request.app[METRICS].webhooks.labels(outcome=f"rejected_{status}").inc()
    request.app[AUDIT].warning(
        "webhook.rejected",
        status=status,
        reason=reason,
        webhook_id=_safe_id(request.headers.get("webhook-id")),
        remote=request.remote,
    )
    if status == 503:
        return _json(503, error="unavailable", reason=reason)
    return _json(status, error=reason)


def _safe_id(value: str | None) -> str | None:
    return value if value is not None and _WEBHOOK_ID.fullmatch(value) else None


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None past ``limit`` bytes (read no further than that)."""
    length = request.content_length
    if length is not None and length > limit:
        return None
    body = await request.content.read(limit + 1)
    while len(body) <= limit and not request.content.at_eof():
        more = await request.content.read(limit + 1 - len(body))
        if not more:
            break
        body += more
    return None if len(body) > limit else body


def _verify(signer: Webhook, body: bytes, request: web.Request) -> str | None:
    """The reason the signature fails, or None when it verifies."""
    wid = request.headers.get("webhook-id")
    ts = request.headers.get("webhook-timestamp")
    sig = request.headers.get("webhook-signature")
    if not wid or not ts or not sig:
        return "missing signature headers"
    if not _WEBHOOK_ID.fullmatch(wid):
        return "malformed webhook-id"
    if not ts.isascii() or not ts.isdigit():
        return "malformed webhook-timestamp"
    if not _SIGNATURE.fullmatch(sig):
        return "malformed webhook-signature"
    try:
        signer.verify(
            body.decode("utf-8"),
            {"webhook-id": wid, "webhook-timestamp": ts, "webhook-signature": sig},
            json_parse=False,
        )
    except WebhookVerificationError as exc:
        return str(exc).lower() or "signature verification failed"
    except (ValueError, TypeError):
        # The library's own parsing (split, base64) on inputs our regexes let through.
        return "malformed webhook-signature"
    return None


async def _checked_body(request: web.Request, timeout_s: float, limit: int) -> bytes | web.Response:
    """The whole body as UTF-8 bytes, or the refusal to send instead."""
    try:
        # A sender that stops mid-body must not hold a handler for ever.
        async with asyncio.timeout(timeout_s):
            body = await _read_body(request, limit)
    except TimeoutError:
        return _reject(request, 408, "request body not received in time")
    except ConnectionError:
        # The client hung up mid-body (or broke its chunked framing and then
        # hung up): its fault, not ours, so no "internal error" and no traceback.
        return _reject(request, 400, "request body incomplete")
    if body is None:
        return _reject(request, 413, f"body over {limit} bytes")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return _reject(request, 400, "body is not UTF-8")
    return body


async def receive(request: web.Request) -> web.Response:
    app = request.app
    cfg = app[CONFIG].webhook
    if app[LIFECYCLE].draining:
        return _reject(request, 503, "shutting down")
    if request.content_type != "application/json":
        return _reject(request, 415, "content-type must be application/json")
    body = await _checked_body(request, cfg.body_timeout_s, cfg.max_body_bytes)
    if isinstance(body, web.Response):
        return body
    reason = _verify(app[SIGNER], body, request)
    if reason is not None:
        return _reject(request, 401, reason)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _reject(request, 400, "body is not JSON")
    webhook_id = request.headers["webhook-id"]
    try:
        job = parse_event(doc, webhook_id, datetime.now(UTC))
    except EventError as exc:
        return _reject(request, 400, str(exc))
    audit, metrics = app[AUDIT], app[METRICS]
    if job is None:
        metrics.webhooks.labels(outcome="ignored").inc()
        audit.info("webhook.ignored", webhook_id=webhook_id, type=str(doc.get("type"))[:64])
        return _json(200, status="ignored")
    started = time.monotonic()
    try:
        # Shielded: a client hanging up mid-commit must not leave us unsure
        # whether the job exists. The commit completes either way.
        outcome = await asyncio.shield(app[JOURNAL].enqueue(job))
    except JournalError:
        return _reject(request, 503, "journal cannot record the job")
    latency_ms = round((time.monotonic() - started) * 1000, 2)
    if outcome is Enqueued.DUPLICATE:
        metrics.webhooks.labels(outcome="duplicate").inc()
        audit.info("webhook.duplicate", webhook_id=webhook_id, recording_id=job.recording_id)
        return _json(200, status="duplicate")
    app[POOL].wake()
    metrics.webhooks.labels(outcome="accepted").inc()
    audit.info(
        "webhook.accepted",
        webhook_id=webhook_id,
        recording_id=job.recording_id,
        contact_id=job.contact_id,
        codec=job.codec,
        offsets=None if job.offsets is None else list(job.offsets),
        journal_ms=latency_ms,
    )
    return _json(202, status="accepted")


@web.middleware
async def never_500(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The contract allows one 5xx, the 503; a bug answers that, not a traceback."""
    life = request.app[LIFECYCLE]
    life.enter()
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        logging.getLogger(__name__).exception("webhook handler failed")
        return _reject(request, 503, "internal error")
    finally:
        life.leave()
