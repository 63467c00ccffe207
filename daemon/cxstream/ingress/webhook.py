"""``POST /webhooks/cxone``: every row of contract §2's answer table, and no other.

Order of checks: the peer (``webhook.allow_from``, 403) before anything else,
then cheap refusals (draining, type), a static credential from the headers
(``bearer``/``basic``), the size, then a signature over the exact bytes
received (``standard-webhooks``), then the body. Nothing unauthenticated is
parsed, and nothing rejected reaches the journal or CXone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from cxstream.ingress.auth import AUTHENTICATOR, WEBHOOK_ID, Denied, client_address, peer_allowed
from cxstream.ingress.backpressure import ADMISSION, queue_full
from cxstream.ingress.event import EventError, parse_event
from cxstream.journal import Enqueued, JobRequest, JournalError
from cxstream.keys import AUDIT, CONFIG, JOURNAL, LIFECYCLE, METRICS, POOL

RETRY_AFTER_S = "5"


def _json(code: int, headers: dict[str, str] | None = None, **body: object) -> web.Response:
    if code == 503:
        headers = {**(headers or {}), "Retry-After": RETRY_AFTER_S}
    return web.Response(
        status=code, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


def _peer(request: web.Request) -> str | None:
    address = client_address(request)
    return None if address is None else str(address)


def _reject(
    request: web.Request, status: int, reason: str, challenge: str | None = None
) -> web.Response:
    request.app[METRICS].webhooks.labels(outcome=f"rejected_{status}").inc()
    request.app[AUDIT].warning(
        "webhook.rejected",
        status=status,
        reason=reason,
        webhook_id=_safe_id(request.headers.get("webhook-id")),
        remote=request.remote,
        auth=request.app[AUTHENTICATOR].mode,
        peer=_peer(request),
    )
    if status == 503:
        return _json(503, error="unavailable", reason=reason)
    headers = None if challenge is None else {"WWW-Authenticate": challenge}
    return _json(status, headers, error=reason)


def _unauthorized(request: web.Request, denied: Denied) -> web.Response:
    return _reject(request, 401, denied.reason, denied.challenge)


def _safe_id(value: str | None) -> str | None:
    return value if value is not None and WEBHOOK_ID.fullmatch(value) else None


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


def _admit(request: web.Request) -> web.Response | None:
    """The refusals that need no body: peer, drain, type, a credential in the headers."""
    app = request.app
    # Before anything else, so a stranger learns nothing (not even that we drain).
    if not peer_allowed(client_address(request), app[CONFIG].webhook.allow_from):
        return _reject(request, 403, "peer address not allowed")
    if app[LIFECYCLE].draining:
        return _reject(request, 503, "shutting down")
    if request.content_type != "application/json":
        return _reject(request, 415, "content-type must be application/json")
    denied = app[AUTHENTICATOR].precheck(request.headers)
    return None if denied is None else _unauthorized(request, denied)


async def _checked_body(request: web.Request) -> bytes | web.Response:
    """The whole body as UTF-8 bytes, or the refusal to send instead."""
    cfg = request.app[CONFIG].webhook
    try:
        # A sender that stops mid-body must not hold a handler for ever.
        async with asyncio.timeout(cfg.body_timeout_s):
            body = await _read_body(request, cfg.max_body_bytes)
    except TimeoutError:
        return _reject(request, 408, "request body not received in time")
    except ConnectionError:
        # The client hung up mid-body (or broke its chunked framing and then
        # hung up): its fault, not ours, so no "internal error" and no traceback.
        return _reject(request, 400, "request body incomplete")
    if body is None:
        return _reject(request, 413, f"body over {cfg.max_body_bytes} bytes")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return _reject(request, 400, "body is not UTF-8")
    return body


async def receive(request: web.Request) -> web.Response:
    app = request.app
    auth = app[AUTHENTICATOR]
    refused = _admit(request)
    if refused is not None:
        return refused
    if await queue_full(app[ADMISSION], app[JOURNAL]):
        return _reject(request, 503, "queue full")
    body = await _checked_body(request)
    if isinstance(body, web.Response):
        return body
    denied = auth.verify(request.headers, body)
    if denied is not None:
        return _unauthorized(request, denied)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return _reject(request, 400, "body is not JSON")
    webhook_id = auth.webhook_id(request.headers)
    try:
        job = parse_event(doc, webhook_id, datetime.now(UTC), app[CONFIG].source.kind)
    except EventError as exc:
        return _reject(request, 400, str(exc))
    if job is None:
        app[METRICS].webhooks.labels(outcome="ignored").inc()
        app[AUDIT].info(
            "webhook.ignored",
            webhook_id=webhook_id,
            type=str(doc.get("type"))[:64],
            auth=auth.mode,
            peer=_peer(request),
        )
        return _json(200, status="ignored")
    return await _record(request, job)


async def _record(request: web.Request, job: JobRequest) -> web.Response:
    """202 only once the journal holds the job; 200 duplicate if it already did."""
    app = request.app
    audit, metrics = app[AUDIT], app[METRICS]
    mode, peer = app[AUTHENTICATOR].mode, _peer(request)
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
        audit.info(
            "webhook.duplicate",
            webhook_id=job.webhook_id,
            recording_id=job.recording_id,
            auth=mode,
            peer=peer,
        )
        return _json(200, status="duplicate")
    app[POOL].wake()
    app[ADMISSION].accepted()
    metrics.webhooks.labels(outcome="accepted").inc()
    audit.info(
        "webhook.accepted",
        webhook_id=job.webhook_id,
        recording_id=job.recording_id,
        contact_id=job.contact_id,
        codec=job.codec,
        offsets=None if job.offsets is None else list(job.offsets),
        journal_ms=latency_ms,
        scope=job.scope,
        original_name=job.original_name,
        auth=mode,
        peer=peer,
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
