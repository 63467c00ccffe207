"""cxone-stream regression against a tiny fake of contract §1 (default kind, Standard Webhooks)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, web

import audio
from common import Checks, Daemon, audit_hygiene, find_published, outcome, serve, wait_for, whsec, write_toml
from sink import Sink


async def run(d: Path, checks: Checks) -> None:
    P = "stream"
    opus = audio.make(d, "s1", "opus", 3).read_bytes()
    cid, csec = "stream-client", "sc-" + secrets.token_urlsafe(20)
    tokens: list[str] = []
    reqs: list[dict[str, Any]] = []
    dur = max(1, round(audio.duration_ms(d / "s1.ogg") / 1000))

    async def token(req: web.Request) -> web.Response:
        form = await req.post()
        a = req.headers.get("Authorization", "")
        good = "Basic " + base64.b64encode(f"{cid}:{csec}".encode()).decode()
        if form.get("grant_type") != "client_credentials" or not hmac.compare_digest(a, good):
            return web.json_response({"error": "invalid_client"}, status=401)
        t = secrets.token_urlsafe(32)
        tokens.append(t)
        return web.json_response({"access_token": t, "token_type": "Bearer", "expires_in": 3600})

    def authed(req: web.Request) -> bool:
        return req.headers.get("Authorization", "")[7:] in tokens

    async def meta(req: web.Request) -> web.Response:
        if not authed(req):
            return web.json_response({"error": "invalid_token"}, status=401)
        if req.match_info["rid"] != "rec-s1":
            return web.json_response({"error": "recording_not_found"}, status=404)
        return web.json_response({"recordingId": "rec-s1", "durationSeconds": dur, "maxDuration": 180, "maxSegmentsPerRequest": 3,
                                  "segments": [{"offset": 0, "duration": dur}],
                                  "codecs": {"opus": {"contentType": "audio/ogg; codecs=opus", "bytes": len(opus),
                                                      "sha256": hashlib.sha256(opus).hexdigest()}}})

    async def stream(req: web.Request) -> web.StreamResponse:
        if not authed(req):
            return web.json_response({"error": "invalid_token"}, status=401)
        q = req.query
        reqs.append({"q": dict(q), "range": req.headers.get("Range")})
        if q.get("offsets") != "0" or q.get("codec") != "opus":
            return web.json_response({"error": "schema_validation"}, status=400)
        start, status = 0, 200
        if req.headers.get("Range"):
            start, status = int(req.headers["Range"][6:-1]), 206
        r = web.StreamResponse(status=status)
        r.content_type = "audio/ogg"
        r.headers["Accept-Ranges"] = "bytes"
        r.headers["Repr-Digest"] = "sha-256=:" + base64.b64encode(hashlib.sha256(opus).digest()).decode() + ":"
        if status == 206:
            r.headers["Content-Range"] = f"bytes {start}-{len(opus) - 1}/{len(opus)}"
        r.enable_chunked_encoding()
        await r.prepare(req)
        body = opus[start:]
        if len(reqs) == 1:  # stall halfway
            await r.write(body[: len(body) // 2])
            await asyncio.sleep(20)
            return r
        await r.write(body)
        await r.write_eof()
        return r

    app = web.Application()
    app.router.add_post("/auth/token", token)
    app.router.add_get("/api/v2/recordings/{rid}", meta)
    app.router.add_get("/api/v2/recordings/{rid}/stream", stream)
    sink = Sink(secret=whsec())
    r1, base = await serve(app)
    r2, surl = await serve(sink.app())
    secret = whsec()
    cfg, audit_path, storage = d / "c.toml", d / "audit.ndjson", d / "rec"
    write_toml(cfg, {
        "webhook": {"listen": "127.0.0.1:0", "secret": secret},
        "cxone": {"base_url": base, "token_url": base + "/auth/token", "client_id": cid, "client_secret": csec},
        "streams": {"idle_timeout_s": 2, "backoff_base_s": 0.2, "backoff_cap_s": 2},
        "storage": {"dir": str(storage), "state_dir": str(d / "state"), "min_free_bytes": 0},
        "archive": {"url": surl + "/archive", "secret": sink.secret},
        "audit": {"path": str(audit_path)}, "admin": {"listen": "127.0.0.1:0"},
    })
    daemon = Daemon(cfg, audit_path, d)
    daemon.start()
    try:
        await daemon.wait_started()
        body = json.dumps({"type": "recording.completed", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "data": {"recordingId": "rec-s1", "contactId": "c-1", "codec": "opus"}}).encode()
        key = base64.b64decode(secret[6:])
        wid, ts = "msg_" + secrets.token_hex(8), str(int(time.time()))
        sig = base64.b64encode(hmac.new(key, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
        async with ClientSession() as s:
            url = daemon.webhook + "/webhooks/cxone"
            h = {"Content-Type": "application/json"}
            async with s.post(url, data=body, headers={**h, "Authorization": "Bearer " + "x" * 32}) as r:
                checks.check(f"{P}: bearer token alone in standard-webhooks mode -> 401", r.status == 401, str(r.status))
            async with s.post(url, data=body, headers={**h, "webhook-id": wid, "webhook-timestamp": ts, "webhook-signature": "v1," + sig[:-4] + "AAA="}) as r:
                checks.check(f"{P}: bad signature -> 401", r.status == 401, str(r.status))
            bad = json.dumps({"type": "recording.completed", "data": {"contactId": "c-1"}}).encode()
            bsig = base64.b64encode(hmac.new(key, f"{wid}x.{ts}.".encode() + bad, hashlib.sha256).digest()).decode()
            async with s.post(url, data=bad, headers={**h, "webhook-id": wid + "x", "webhook-timestamp": ts, "webhook-signature": "v1," + bsig}) as r:
                checks.check(f"{P}: recordingId still required -> 400", r.status == 400, str(r.status))
            async with s.post(url, data=body, headers={**h, "webhook-id": wid, "webhook-timestamp": ts, "webhook-signature": "v1," + sig}) as r:
                checks.check(f"{P}: signed webhook -> 202 accepted", r.status == 202 and "accepted" in await r.text(), str(r.status))
            async with s.post(url, data=body, headers={**h, "webhook-id": wid, "webhook-timestamp": ts, "webhook-signature": "v1," + sig}) as r:
                checks.check(f"{P}: same webhook-id -> 200 duplicate", r.status == 200 and "duplicate" in await r.text(), str(r.status))
            await wait_for(lambda: outcome(daemon.lines(), "rec-s1"), 60, "outcome")
            await wait_for(lambda: sink.deliveries, 20, "archive")
        o = outcome(daemon.lines(), "rec-s1")
        checks.check(f"{P}: rec-s1 completed", o is not None and o["event"] == "recording.completed", str(o))
        pub = find_published(storage, "rec-s1")
        checks.check(f"{P}: rec-s1.opus byte-identical to the source", len(pub) == 1 and pub[0].name == "rec-s1.opus" and pub[0].read_bytes() == opus, str(pub))
        checks.check(f"{P}: stall resumed with Range on the same request", len(reqs) >= 2 and bool(reqs[1]["range"]) and reqs[1]["q"] == reqs[0]["q"], str(reqs))
        checks.check(f"{P}: offsets sent as '0', maxDuration given", reqs[0]["q"].get("offsets") == "0" and "maxDuration" in reqs[0]["q"], str(reqs[0]))
        checks.check(f"{P}: archive announcement codec opus", sink.deliveries[0]["body"]["data"].get("codec") == "opus", str(sink.deliveries[0]))
        audit_hygiene(checks, P, daemon.lines(), [csec, secret, sink.secret, *tokens, sig], audit_path.read_text())
    finally:
        rc = daemon.stop()
        checks.check(f"{P}: daemon stops cleanly (exit 0)", rc == 0, f"rc={rc}")
        await r1.cleanup()
        await r2.cleanup()
