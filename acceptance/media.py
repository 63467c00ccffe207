"""A fake "media host": serves files at expiring, HMAC-signed temporary URLs.

Written from platforms.md only: a plain GET without Authorization, Range
support unconfirmed (configurable per file), expiry answered 403 (Genesys) or
403/404 (CXone). Faults per request number: stall, cut, 503.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class MediaFile:
    key: str
    data: bytes
    content_type: str
    range_ok: bool = True
    # faults by 1-based request number of this file: "stall", "cut", "503"
    faults: dict[int, str] = field(default_factory=dict)
    # ttl (s) of each URL issued, by 1-based issue number; default ttl otherwise
    ttl_by_issue: dict[int, float] = field(default_factory=dict)
    expired_status: int = 403
    chunked: bool = False
    issued: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)


class MediaHost:
    def __init__(self, default_ttl: float = 600.0, stall_s: float = 30.0) -> None:
        self.files: dict[str, MediaFile] = {}
        self.default_ttl = default_ttl
        self.stall_s = stall_s
        self.key = secrets.token_bytes(32)
        self.base = ""
        self.auth_headers_seen = 0
        self.url_secrets: list[str] = []
        self.unknown_requests: list[str] = []

    def add(self, f: MediaFile) -> MediaFile:
        self.files[f.key] = f
        return f

    def url(self, key: str) -> str:
        f = self.files[key]
        f.issued += 1
        ttl = f.ttl_by_issue.get(f.issued, self.default_ttl)
        exp = int(time.time() + ttl) if ttl > 0 else int(time.time()) - 1
        sig = hmac.new(self.key, f"{key}:{exp}".encode(), hashlib.sha256).hexdigest()
        self.url_secrets.append(sig)
        return f"{self.base}/media/{key}?Expires={exp}&Signature={sig}&X-Amz-Credential=AKIAFAKE"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        f = self.files.get(key)
        if f is None:
            self.unknown_requests.append(key)
            return web.Response(status=404, text="NoSuchKey")
        n = len(f.requests) + 1
        rec: dict[str, Any] = {
            "n": n, "range": request.headers.get("Range"),
            "auth": "Authorization" in request.headers, "status": None,
        }
        f.requests.append(rec)
        if rec["auth"]:
            self.auth_headers_seen += 1
        try:
            exp = int(request.query["Expires"])
            sig = request.query["Signature"]
        except (KeyError, ValueError):
            rec["status"] = 403
            return web.Response(status=403, text="<Error><Code>AccessDenied</Code></Error>")
        good = hmac.new(self.key, f"{key}:{exp}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(good, sig):
            rec["status"] = 403
            return web.Response(status=403, text="<Error><Code>SignatureDoesNotMatch</Code></Error>")
        if time.time() > exp:
            rec["status"] = f.expired_status
            return web.Response(status=f.expired_status, text="<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>")
        fault = f.faults.get(n)
        if fault == "503":
            rec["status"] = 503
            return web.Response(status=503, text="Slow Down", headers={"Retry-After": "1"})
        start = 0
        status = 200
        rng = request.headers.get("Range")
        if rng and f.range_ok:
            m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
            if m and int(m.group(1)) < len(f.data):
                start = int(m.group(1))
                status = 206
            elif m:
                rec["status"] = 416
                return web.Response(status=416, headers={"Content-Range": f"bytes */{len(f.data)}"})
        body = f.data[start:]
        resp = web.StreamResponse(status=status)
        resp.content_type = f.content_type
        if f.range_ok:
            resp.headers["Accept-Ranges"] = "bytes"
        if status == 206:
            resp.headers["Content-Range"] = f"bytes {start}-{len(f.data) - 1}/{len(f.data)}"
        if f.chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(body)
        rec["status"] = status
        rec["start"] = start
        await resp.prepare(request)
        cut_at = len(body) // 2 if fault in ("stall", "cut") else None
        pos = 0
        while pos < len(body):
            end = min(pos + 4096, len(body))
            if cut_at is not None and end > cut_at:
                end = cut_at
            if end > pos:
                await resp.write(body[pos:end])
            pos = end
            if cut_at is not None and pos >= cut_at:
                if fault == "stall":
                    rec["stalled_at"] = start + pos
                    await asyncio.sleep(self.stall_s)
                    return resp
                rec["cut_at"] = start + pos
                tr = request.transport
                if tr is not None:
                    tr.abort()
                return resp
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/media/{key}", self.handle)
        return app
