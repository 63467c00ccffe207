"""Genesys Cloud's Recording API, as platforms.md documents it.

Login host: ``POST /oauth/token`` (client credentials in Basic auth only).
API host: ``GET /api/v2/conversations/{id}/recordings`` (list) and
``…/recordings/{recordingId}`` (one), with ``formatId`` and ``maxWaitMs``.
Transcoding to a format starts at the first request for it and takes the
recording's ``transcode_s``: until then the answer is 202 (or, per recording,
200 with no ``mediaUris``) with ``outputSizeInBytes`` 0 and the remaining
``estimatedTranscodeTimeMs``; ``maxWaitMs`` holds a request up to that long
for it to finish. Then ``mediaUris`` maps ``"S"`` to ``{mediaUri}``, a signed
media-host URL. ``fileState`` ARCHIVED, DELETED, ERROR, RESTORING and
UPLOADING never give media. Errors carry ``{message, code, status}``; 429s
``too.many.requests.retry.after`` with ``Retry-After``.

Not documented, so chosen here (docs/simulator.md): a format the recording
cannot be transcoded to answers the one-recording GET with 400
``recording.format.unavailable``, and appears in the list without
``mediaUris`` and with ``recordingErrorStatus = "FORMAT_UNAVAILABLE"``.
"""

from __future__ import annotations

import hmac
import time
import uuid
from typing import Any

from aiohttp import hdrs, web

from cxstream.formats import wav
from cxstream.sim.audio import AudioLibrary
from cxstream.sim.auth import basic_credentials, bearer_token, read_form
from cxstream.sim.delivery import pause
from cxstream.sim.media import MediaFile
from cxstream.sim.platform import PlatformState, iso
from cxstream.sim.platform_spec import (
    GENESYS_FORMAT_IDS,
    PLAYABLE_STATES,
    GenesysConversation,
    GenesysRecording,
    GenesysSettings,
)
from cxstream.sim.responses import json_response
from cxstream.sim.spec import RecordingSpec

FORMAT_FILES = {"OGG_OPUS": ("opus", "audio/ogg"), "WAV": ("wav", "audio/wav")}
DEFAULT_FORMAT = "WEBM"  # the API's documented default for formatId
MAX_WAIT_MS = 60_000
DAY_S = 86_400.0


def media_key(recording_id: str, fmt: str) -> str:
    return f"{recording_id}.{fmt}"


class GenesysState(PlatformState):
    def __init__(
        self,
        *,
        settings: GenesysSettings,
        client_id: str,
        client_secret: str,
        archive_secret: str,
        token_ttl: float,
    ) -> None:
        super().__init__(
            client_id=client_id,
            client_secret=client_secret,
            archive_secret=archive_secret,
            token_ttl=token_ttl,
            url_ttl_s=settings.url_ttl_s,
            rate_limit=settings.rate_limit,
            rate_window_s=settings.rate_window_s,
        )
        self.settings = settings
        self.conversations: dict[str, GenesysConversation] = {}
        self.requests: dict[str, list[int]] = {}  # statuses answered, per conversation id
        self._called_at: dict[str, float] = {}
        self._transcode_from: dict[tuple[str, str], float] = {}
        self._audio = AudioLibrary()

    def add_conversation(self, conversation: GenesysConversation) -> None:
        """Add or replace a conversation (its call ends now; transcoding starts afresh)."""
        self.conversations[conversation.id] = conversation
        self.requests[conversation.id] = []
        self._called_at[conversation.id] = time.time()
        for rec in conversation.recordings:
            for fmt in rec.formats:
                self._transcode_from.pop((rec.id, fmt), None)
                ext, content_type = FORMAT_FILES[fmt]
                self.media.add(
                    MediaFile(
                        key=media_key(rec.id, fmt),
                        filename=f"{rec.id}.{ext}",
                        content_type=content_type,
                        body=self.body(rec, fmt),
                        spec=rec.media,
                        expired_status=403,
                    )
                )
        self.notify()

    def body(self, rec: GenesysRecording, fmt: str) -> bytes:
        """The true file: chained Ogg Opus from the fixtures, or WAV around generated PCM."""
        spec = RecordingSpec(rec.id, segments=rec.segments, segment_seconds=rec.segment_seconds)
        indices = range(rec.segments)
        if fmt == "OGG_OPUS":
            return self._audio.body(spec, "opus", indices)
        samples = self._audio.body(spec, "pcm", indices)
        return wav.header(len(samples)) + samples

    def transcode_left(self, rec: GenesysRecording, fmt: str) -> float:
        """Seconds until ``fmt`` is ready; the first call starts the clock."""
        started = self._transcode_from.setdefault((rec.id, fmt), time.monotonic())
        return max(0.0, rec.transcode_s - (time.monotonic() - started))

    def recording_body(
        self, conv: GenesysConversation, rec: GenesysRecording, fmt: str
    ) -> tuple[str, dict[str, Any]]:
        """``(outcome, Recording)``; outcome: ready, transcoding, unplayable, format_error."""
        called = self._called_at[conv.id]
        before = sum(r.duration_seconds for r in conv.recordings[: conv.recordings.index(rec)])
        start = called - sum(r.duration_seconds for r in conv.recordings) + before
        body: dict[str, Any] = {
            "id": rec.id,
            "conversationId": conv.id,
            "sessionId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"session/{rec.id}")),
            "startTime": iso(start),
            "endTime": iso(start + rec.duration_seconds),
            "media": "audio",
            "fileState": rec.state,
            "archiveDate": iso(called + 90 * DAY_S),
            "deleteDate": iso(called + 365 * DAY_S),
            "recordingFileRole": "CUSTOMER_EXPERIENCE",
            "selfUri": f"/api/v2/conversations/{conv.id}/recordings/{rec.id}",
        }
        if rec.state == "ARCHIVED":
            body |= {"archiveDate": iso(called - DAY_S), "archiveMedium": "CloudArchive"}
        if rec.state == "DELETED":
            body["deleteDate"] = iso(called - DAY_S)
        if rec.state == "ERROR":
            body["recordingErrorStatus"] = "ERROR"
        if rec.state not in PLAYABLE_STATES or fmt == "NONE":
            return "unplayable", body
        if fmt not in rec.formats:
            return "format_error", body | {"recordingErrorStatus": "FORMAT_UNAVAILABLE"}
        estimate = int(rec.transcode_s * 1000)
        left = self.transcode_left(rec, fmt)
        if left > 0:
            return "transcoding", body | {
                "estimatedTranscodeTimeMs": max(1, int(left * 1000)),
                "outputSizeInBytes": 0,
                "outputDurationMs": 0,
            }
        key = media_key(rec.id, fmt)
        return "ready", body | {
            "mediaUris": {"S": {"mediaUri": self.media.url(key), "waveformData": []}},
            "estimatedTranscodeTimeMs": estimate,
            "actualTranscodeTimeMs": estimate,
            "outputDurationMs": rec.duration_seconds * 1000,
            "outputSizeInBytes": len(self.media.files[key].body),
        }

    def snapshot(self) -> dict[str, Any]:
        out = super().snapshot()
        out["conversations"] = {
            cid: {"requests": len(statuses), "statuses": statuses}
            for cid, statuses in self.requests.items()
        }
        return out


GENESYS_KEY = web.AppKey("cxstream_sim_genesys", GenesysState)


def api_error(status: int, code: str, message: str, retry_after: int | None = None) -> web.Response:
    body = {
        "message": message,
        "code": code,
        "status": status,
        "messageParams": {},
        "contextId": str(uuid.uuid4()),
        "details": [],
        "errors": [],
    }
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return json_response(body, status, headers)


def too_many(retry_after: int) -> web.Response:
    message = f"Rate limit exceeded the maximum. Retry the request in [{retry_after}] seconds"
    return api_error(429, "too.many.requests.retry.after", message, retry_after)


async def handle_login(request: web.Request) -> web.StreamResponse:
    state = request.app[GENESYS_KEY]
    login, password = basic_credentials(request.headers.get(hdrs.AUTHORIZATION, "")) or ("", "")
    # Both comparisons always run, so a wrong id costs as long as a wrong secret.
    ok = hmac.compare_digest(login.encode(), state.client_id.encode())
    ok &= hmac.compare_digest(password.encode(), state.client_secret.encode())
    if not ok:
        state.count_token_request("rejected")
        body = {"error": "invalid_client", "description": "client not found"}
        return json_response(body | {"error_description": "client not found"}, 401)
    form = await read_form(request)
    grant = None if form is None else form.get("grant_type")
    if grant != "client_credentials":
        state.count_token_request("rejected")
        if form is None:
            error, description = "invalid_request", "a urlencoded UTF-8 form is required"
        elif grant is None:
            error, description = "invalid_request", "grant_type is required"
        else:
            error, description = "unsupported_grant_type", "grant_type must be client_credentials"
        return json_response({"error": error, "description": description}, 400)
    state.count_token_request("client_credentials")
    return json_response(
        {
            "access_token": state.issue_token(),
            "token_type": "bearer",
            "expires_in": max(1, int(state.token_ttl)),
        }
    )


async def handle_recordings(request: web.Request) -> web.StreamResponse:
    state = request.app[GENESYS_KEY]
    if not state.token_valid(bearer_token(request)):
        return api_error(401, "bad.credentials", "Invalid login credentials.")
    wait = state.throttled()
    if wait is not None:
        return too_many(max(1, round(wait)))
    fmt = request.query.get("formatId", DEFAULT_FORMAT)
    if fmt not in GENESYS_FORMAT_IDS:
        return api_error(400, "bad.request", f"formatId must be one of {GENESYS_FORMAT_IDS}")
    raw_wait = request.query.get("maxWaitMs", "0")
    if not (raw_wait.isascii() and raw_wait.isdigit()):
        return api_error(400, "bad.request", "maxWaitMs must be a non-negative integer")
    max_wait_s = min(int(raw_wait), MAX_WAIT_MS) / 1000
    conv = state.conversations.get(request.match_info["conversation"])
    if conv is None:
        return api_error(404, "not.found", "Conversation not found")
    statuses = state.requests[conv.id]
    number = len(statuses) + 1
    statuses.append(0)  # a placeholder: a held request must keep its number
    resp = await _answer(request, state, conv, number, fmt, max_wait_s)
    statuses[number - 1] = resp.status
    state.notify()
    return resp


async def _answer(
    request: web.Request,
    state: GenesysState,
    conv: GenesysConversation,
    number: int,
    fmt: str,
    max_wait_s: float,
) -> web.Response:
    kinds = {f.kind: f for f in conv.faults if f.applies(number)}
    if "expire_token" in kinds:
        state.revoke(bearer_token(request))
        return api_error(401, "bad.credentials", "Invalid login credentials.")
    if "throttle" in kinds:
        return too_many(kinds["throttle"].retry_after)
    if "status" in kinds:
        fault = kinds["status"]
        return api_error(fault.status, "service.unavailable", "Try again", fault.retry_after)
    wanted = request.match_info.get("recording")
    recordings = [r for r in conv.recordings if wanted is None or r.id == wanted]
    if not recordings:
        return api_error(404, "not.found", "Recording not found")
    # maxWaitMs: hold the request until transcoding is done or maxWaitMs has passed.
    left = max((state.transcode_left(r, fmt) for r in recordings if fmt in r.formats), default=0)
    if left > 0 and max_wait_s > 0:
        await pause(state.shutdown, min(left, max_wait_s))
    answers = [state.recording_body(conv, r, fmt) for r in recordings]
    if wanted is not None:
        outcome, body = answers[0]
        if outcome == "format_error":
            message = f"Recording {wanted} is not available in format {fmt}"
            return api_error(400, "recording.format.unavailable", message)
        status = (
            202 if outcome == "transcoding" and recordings[0].transcoding_answer == "202" else 200
        )
        return json_response(body, status)
    waiting = any(
        outcome == "transcoding" and rec.transcoding_answer == "202"
        for (outcome, _), rec in zip(answers, recordings, strict=True)
    )
    return json_response([body for _, body in answers], 202 if waiting else 200)


def build_login_app(state: GenesysState) -> web.Application:
    app = web.Application()
    app[GENESYS_KEY] = state
    app.router.add_post("/oauth/token", handle_login)
    return app


def build_api_app(state: GenesysState) -> web.Application:
    app = web.Application()
    app[GENESYS_KEY] = state
    base = "/api/v2/conversations/{conversation}/recordings"
    app.router.add_get(base, handle_recordings, allow_head=False)
    app.router.add_get(base + "/{recording}", handle_recordings, allow_head=False)
    return app
