"""Archive sink (contract §3): verifies Standard Webhooks signatures itself."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Sink:
    secret: str  # whsec_<base64>
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0

    def _ok(self, headers: Any, body: bytes) -> bool:
        wid, ts, sigs = headers.get("webhook-id"), headers.get("webhook-timestamp"), headers.get("webhook-signature")
        if not (wid and ts and sigs):
            return False
        try:
            if abs(time.time() - int(ts)) > 300:
                return False
        except ValueError:
            return False
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        want = base64.b64encode(hmac.new(key, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()).decode()
        for s in sigs.split():
            v, _, sig = s.partition(",")
            if v == "v1" and hmac.compare_digest(sig, want):
                return True
        return False

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._ok(request.headers, body):
            self.rejected += 1
            return web.Response(status=401)
        self.deliveries.append({"id": request.headers["webhook-id"], "body": json.loads(body)})
        return web.Response(status=204)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/archive", self.handle)
        return app
