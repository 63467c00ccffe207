"""A fake NICE CXone tenant, from platforms.md only.

Auth host (the issuer): OpenID discovery, /.well-known/cxone-configuration,
the password grant (access key id/secret as username/password plus the app's
client_id/client_secret), an access token that is a JWT carrying tenantId.
API host: GET /media-playback/v1/contacts?acd-call-id=…&media-type=voice-only
&exclude-waveforms=true → interactions[].data.fileToPlayUrl; errors
{internalCode, message}; throttling {message, route}.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from media import MediaHost


def _b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


@dataclass
class Contact:
    contact_id: str
    files: list[str]  # media keys, in the order listed
    not_found_until: float = 0.0  # monotonic time; "Interaction not found" before
    throttle: int = 0  # first N lookups answer 429
    throttle_retry_after: str | None = None
    lookups: int = 0


@dataclass
class CxoneFake:
    media: MediaHost
    tenant_id: str = "11eb0d5c-aaaa-bbbb-cccc-" + secrets.token_hex(6)
    access_key_id: str = "AK" + secrets.token_hex(8).upper()
    access_key_secret: str = "aks-" + secrets.token_urlsafe(24)
    client_id: str = "cxstream-backend-app"
    client_secret: str = "cs-" + secrets.token_urlsafe(24)
    token_ttl: int = 3600
    contacts: dict[str, Contact] = field(default_factory=dict)
    issued_tokens: list[str] = field(default_factory=list)
    token_requests: int = 0
    bad_token_requests: int = 0
    api_requests: list[dict[str, Any]] = field(default_factory=list)
    issuer: str = ""
    api: str = ""

    # ---- auth host -------------------------------------------------------
    async def openid(self, request: web.Request) -> web.Response:
        return web.json_response({
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/auth/authorize",
            "token_endpoint": self.issuer + "/auth/token",
            "jwks_uri": self.issuer + "/.well-known/jwks",
            "grant_types_supported": ["password", "refresh_token", "authorization_code"],
        })

    async def cxone_config(self, request: web.Request) -> web.Response:
        if request.query.get("tenantId") != self.tenant_id:
            return web.json_response({"message": "tenant not found"}, status=404)
        # both forms, api_endpoint must win (platforms.md)
        return web.json_response({
            "private": False, "area": "na1", "domain": "wrong.invalid",
            "api_endpoint": self.api, "ui_endpoint": "https://na1.example.invalid",
            "auth_endpoint": self.issuer,
        })

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        cid, csec = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                cid, _, csec = base64.b64decode(auth[6:]).decode().partition(":")
            except Exception:
                pass
        ok = (
            form.get("grant_type") == "password"
            and form.get("username") == self.access_key_id
            and form.get("password") == self.access_key_secret
            and cid == self.client_id
            and csec == self.client_secret
        )
        if not ok:
            self.bad_token_requests += 1
            return web.json_response({"error": "invalid_grant", "error_description": "bad credentials"}, status=400)
        now = int(time.time())
        header = _b64u(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        claims = _b64u(json.dumps({
            "iss": self.issuer, "sub": "user:" + self.access_key_id, "tenantId": self.tenant_id,
            "iat": now, "exp": now + self.token_ttl, "name": "api-user",
        }).encode())
        tok = f"{header}.{claims}.{_b64u(secrets.token_bytes(64))}"
        self.issued_tokens.append(tok)
        return web.json_response({
            "access_token": tok, "token_type": "bearer", "expires_in": self.token_ttl,
            "refresh_token": "rt-" + secrets.token_urlsafe(16), "id_token": tok,
        })

    # ---- API host --------------------------------------------------------
    def _valid_token(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            return False
        tok = auth[7:]
        if not any(hmac.compare_digest(tok, t) for t in self.issued_tokens):
            return False
        claims = json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))
        return bool(claims["exp"] > time.time())

    async def contacts_lookup(self, request: web.Request) -> web.Response:
        q = request.query
        rec: dict[str, Any] = {"query": dict(q), "status": None}
        self.api_requests.append(rec)
        if not self._valid_token(request):
            rec["status"] = 401
            return web.json_response({"internalCode": 401, "message": "Unauthorized"}, status=401)
        if q.get("media-type") not in ("voice-only", "all") or "acd-call-id" not in q:
            rec["status"] = 400
            return web.json_response({"internalCode": 400, "message": "invalid request"}, status=400)
        c = self.contacts.get(q["acd-call-id"])
        if c is None:
            rec["status"] = 404
            return web.json_response({"internalCode": 404, "message": "Interaction not found"}, status=404)
        c.lookups += 1
        if c.lookups <= c.throttle:
            rec["status"] = 429
            h = {"Retry-After": c.throttle_retry_after} if c.throttle_retry_after else {}
            return web.json_response(
                {"message": "Rate limit exceeded", "route": "/media-playback/v1/contacts"}, status=429, headers=h)
        import time as _t
        if _t.monotonic() < c.not_found_until:
            rec["status"] = 404
            return web.json_response({"internalCode": 404, "message": "Interaction not found"}, status=404)
        interactions = []
        for i, key in enumerate(c.files):
            interactions.append({
                "mediaType": "voice-only",
                "startTime": "2026-11-24T10:00:00Z",
                "endTime": "2026-11-24T10:05:00Z",
                "data": {
                    "fileToPlayUrl": self.media.url(key),
                    "acdContactId": c.contact_id,
                    "segmentId": f"seg-{c.contact_id}-{i}",
                    "fileName": f"{key}.mp4",
                },
            })
        rec["status"] = 200
        return web.json_response({"contactId": c.contact_id, "interactions": interactions})

    def auth_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.openid)
        app.router.add_get("/.well-known/cxone-configuration", self.cxone_config)
        app.router.add_post("/auth/token", self.token)
        return app

    def api_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/media-playback/v1/contacts", self.contacts_lookup)
        return app
