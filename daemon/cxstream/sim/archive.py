"""``POST /archive``: the archival system's end of contract §3.

It verifies the Standard-Webhooks signature, keeps every validly signed
announcement (retries included, so tests can check the ``webhook-id`` is
stable) and can be told to fail the next N valid calls to exercise retries.
"""

from __future__ import annotations

import time

import orjson
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from cxstream.sim.responses import json_response
from cxstream.sim.state import STATE_KEY, Announcement

WEBHOOK_KEY = web.AppKey("cxstream_sim_archive_webhook", Webhook)
SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def make_webhook(secret: str) -> Webhook:
    """The verifier for ``secret``; ValueError (one line) if it is not usable."""
    try:
        return Webhook(secret)
    except Exception as exc:
        raise ValueError(f"archive secret must be whsec_<base64>: {exc}") from None


async def handle_archive(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    body = await request.read()
    headers = {name: request.headers.get(name, "") for name in SIGNATURE_HEADERS}
    try:
        # The library raises assorted exceptions (bad base64, a signature without
        # a comma, non-UTF-8 bodies); every one of them means "not verified".
        request.app[WEBHOOK_KEY].verify(body, headers, json_parse=False)
    except Exception:
        return json_response({"error": "invalid_signature"}, 401)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return json_response({"error": "invalid_json"}, 400)
    status = 204
    if state.archive_fail_remaining > 0:
        state.archive_fail_remaining -= 1
        status = 503
    state.announcements.append(
        Announcement(
            webhook_id=headers["webhook-id"],
            payload=payload,
            received_at=time.time(),
            status=status,
        )
    )
    state.notify()
    if status == 503:
        return json_response({"error": "unavailable"}, 503, {"Retry-After": "1"})
    return web.Response(status=204)


async def handle_archive_list(request: web.Request) -> web.StreamResponse:
    return json_response(request.app[STATE_KEY].announcements_json())


async def handle_archive_config(request: web.Request) -> web.StreamResponse:
    """``{"fail_first": N}``: the next N validly signed calls answer 503."""
    try:
        config = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return json_response({"error": "invalid_json"}, 400)
    fail_first = config.get("fail_first") if isinstance(config, dict) else None
    if isinstance(fail_first, bool) or not isinstance(fail_first, int) or fail_first < 0:
        return json_response({"error": "fail_first must be a non-negative integer"}, 400)
    request.app[STATE_KEY].archive_fail_remaining = fail_first
    return json_response({"fail_first": fail_first})
