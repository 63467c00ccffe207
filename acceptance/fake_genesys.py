"""A fake Genesys Cloud org, from platforms.md only.

Login host: POST /oauth/token, grant_type=client_credentials, Basic
client_id:client_secret. API host: GET /api/v2/conversations/<id>/recordings
[/<recordingId>]?formatId=… with the documented recording body; 202 / empty
mediaUris / outputSizeInBytes = 0 while transcoding; fileState ARCHIVED,
DELETED, ERROR; 429 + Retry-After + too.many.requests.retry.after.
"""

from __future__ import annotations

import base64
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from media import MediaHost


@dataclass
class GRecording:
    rid: str
    conv: str
    # format -> media key; a format absent = "the API reports an error for this format"
    formats: dict[str, str]
    durations: dict[str, int] = field(default_factory=dict)  # format -> ms
    sizes: dict[str, int] = field(default_factory=dict)
    file_state: str = "AVAILABLE"
    # not-ready answers for the first polls (per format): list of "202", "empty", "zero"
    transcode: list[str] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)


@dataclass
class GConversation:
    cid: str
    recordings: list[GRecording]
    throttle: int = 0  # first N API calls about this conversation: 429
    calls: int = 0


@dataclass
class GenesysFake:
    media: MediaHost
    client_id: str = "3f0c1a2b-" + secrets.token_hex(4)
    client_secret: str = "gcs-" + secrets.token_urlsafe(30)
    token_ttl: int = 86400
    convs: dict[str, GConversation] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)
    token_requests: int = 0
    bad_token_requests: int = 0
    api_requests: list[dict[str, Any]] = field(default_factory=list)
    format_error_as_400: bool = False

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests += 1
        form = await request.post()
        auth = request.headers.get("Authorization", "")
        ok = False
        if auth.startswith("Basic ") and form.get("grant_type") == "client_credentials":
            try:
                cid, _, csec = base64.b64decode(auth[6:]).decode().partition(":")
                ok = cid == self.client_id and csec == self.client_secret
            except Exception:
                ok = False
        if not ok:
            self.bad_token_requests += 1
            return web.json_response({"error": "invalid_client", "description": "client not found"}, status=401)
        tok = secrets.token_urlsafe(64)
        self.tokens[tok] = time.time() + self.token_ttl
        return web.json_response({"access_token": tok, "token_type": "bearer", "expires_in": self.token_ttl})

    def _authed(self, request: web.Request) -> bool:
        a = request.headers.get("Authorization", "")
        return a.startswith("Bearer ") and self.tokens.get(a[7:], 0) > time.time()

    def _body(self, r: GRecording, fmt: str) -> tuple[int, dict[str, Any]]:
        base: dict[str, Any] = {
            "id": r.rid, "conversationId": r.conv, "sessionId": "sess-" + r.rid,
            "startTime": "2026-11-24T10:00:00.000Z", "endTime": "2026-11-24T10:04:00.000Z",
            "media": "audio", "mediaSubtype": "Trunk", "fileState": r.file_state,
            "selfUri": f"/api/v2/conversations/{r.conv}/recordings/{r.rid}",
        }
        if r.file_state != "AVAILABLE":
            base["mediaUris"] = {}
            base["outputSizeInBytes"] = 0
            if r.file_state == "ARCHIVED":
                base["archiveDate"] = "2026-01-01T00:00:00.000Z"
            if r.file_state == "DELETED":
                base["deleteDate"] = "2026-01-01T00:00:00.000Z"
            if r.file_state == "ERROR":
                base["recordingErrorStatus"] = "TRANSCODE_FAILED"
            return 200, base
        n = r.polls.get(fmt, 0)
        r.polls[fmt] = n + 1
        if n < len(r.transcode):
            kind = r.transcode[n]
            base["estimatedTranscodeTimeMs"] = 800
            if kind == "202":
                base["mediaUris"] = {}
                base["outputSizeInBytes"] = 0
                return 202, base
            if kind == "empty":
                base["mediaUris"] = {}
                base["outputSizeInBytes"] = 0
                return 200, base
            if kind == "zero":  # a URI already listed but nothing transcoded yet
                base["mediaUris"] = {"S": {"mediaUri": self.media.base + "/media/not-yet-" + r.rid + "?Expires=0&Signature=x"}}
                base["outputSizeInBytes"] = 0
                return 200, base
        key = r.formats[fmt]
        base["mediaUris"] = {"S": {"mediaUri": self.media.url(key), "waveformData": [0.1, 0.5, 0.3]}}
        base["estimatedTranscodeTimeMs"] = 0
        base["actualTranscodeTimeMs"] = 640
        base["outputDurationMs"] = r.durations[fmt]
        base["outputSizeInBytes"] = r.sizes[fmt]
        return 200, base

    async def recordings(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        rid = request.match_info.get("rid")
        fmt = request.query.get("formatId", "WEBM")
        rec: dict[str, Any] = {"conv": cid, "rid": rid, "query": dict(request.query), "status": None}
        self.api_requests.append(rec)
        if not self._authed(request):
            rec["status"] = 401
            return web.json_response({"status": 401, "code": "bad.credentials", "message": "Invalid login credentials."}, status=401)
        c = self.convs.get(cid)
        if c is None:
            rec["status"] = 404
            return web.json_response({"status": 404, "code": "not.found", "message": "The requested conversation could not be found."}, status=404)
        c.calls += 1
        if c.calls <= c.throttle:
            rec["status"] = 429
            return web.json_response(
                {"status": 429, "code": "too.many.requests.retry.after", "message": "Rate limit exceeded the maximum. Retry the request in [1] seconds"},
                status=429, headers={"Retry-After": "1"})
        recs = c.recordings if rid is None else [r for r in c.recordings if r.rid == rid]
        if rid is not None and not recs:
            rec["status"] = 404
            return web.json_response({"status": 404, "code": "not.found", "message": "recording not found"}, status=404)
        out = []
        status = 200
        for r in recs:
            if r.file_state == "AVAILABLE" and fmt not in r.formats:
                if self.format_error_as_400:
                    rec["status"] = 400
                    return web.json_response({"status": 400, "code": "bad.request", "message": f"formatId {fmt} is not available for this recording"}, status=400)
                # the documented field: an error for this format in the recording body
                out.append({"id": r.rid, "conversationId": r.conv, "fileState": "AVAILABLE", "mediaUris": {},
                            "outputSizeInBytes": 0, "recordingErrorStatus": f"TRANSCODE_{fmt}_UNAVAILABLE"})
                continue
            st, body = self._body(r, fmt)
            if st == 202:
                status = 202
            out.append(body)
        rec["status"] = status
        if rid is not None:
            return web.json_response(out[0], status=status)
        return web.json_response(out, status=status)

    def login_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/oauth/token", self.token)
        return app

    def api_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v2/conversations/{cid}/recordings", self.recordings)
        app.router.add_get("/api/v2/conversations/{cid}/recordings/{rid}", self.recordings)
        return app
