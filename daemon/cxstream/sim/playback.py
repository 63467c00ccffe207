"""NICE CXone's Media Playback API, as platforms.md documents it: the state and
the API host (the auth host is ``playback_auth``).

``GET /media-playback/v1/contacts?acd-call-id=`` answers
``interactions[].data.fileToPlayUrl`` (a signed media-host URL, fresh on
every lookup), errors as ``{internalCode, message}``, throttling as
``{message, route}``, "Interaction not found" until a contact's
``not_ready_s`` has passed, and an optional 150-per-5-minutes rate limit.
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from aiohttp import web

from cxstream.sim.audio import MP4_SECONDS, AudioLibrary
from cxstream.sim.auth import bearer_token
from cxstream.sim.media import MediaFile
from cxstream.sim.platform import PlatformState, iso
from cxstream.sim.platform_spec import PlaybackContact, PlaybackSettings
from cxstream.sim.responses import json_response
from cxstream.sim.tokens import make_jwt

ROUTE = "/media-playback/v1/contacts"
MEDIA_TYPES = ("voice-only", "voice-and-screen", "chat", "email", "all")
VOICE_TYPES = frozenset({"voice-only", "voice-and-screen", "all"})
AREA, DOMAIN = "na1", "niceincontact.com"


def media_key(contact_id: str, index: int) -> str:
    return f"{contact_id}.{index}"


class PlaybackState(PlatformState):
    def __init__(
        self,
        *,
        settings: PlaybackSettings,
        tenant_id: str,
        access_key_id: str,
        access_key_secret: str,
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
        self.tenant_id = tenant_id
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.contacts: dict[str, PlaybackContact] = {}
        self.lookups: dict[str, list[int]] = {}  # statuses answered, per contact id
        self.discovery: dict[str, int] = {"openid": 0, "cxone": 0}
        self.unknown_lookups = 0
        self.refresh_tokens: set[str] = set()
        self._called_at: dict[str, tuple[float, float]] = {}  # (monotonic, wall) of the call end
        self._jwt_key = secrets.token_bytes(32)
        self._audio = AudioLibrary()

    def add_contact(self, contact: PlaybackContact) -> None:
        """Add or replace a contact; its call "ends" now (``not_ready_s`` counts from here)."""
        self.contacts[contact.id] = contact
        self.lookups[contact.id] = []
        self._called_at[contact.id] = (time.monotonic(), time.time())
        for index, item in enumerate(contact.files, 1):
            self.media.add(
                MediaFile(
                    key=media_key(contact.id, index),
                    filename=f"{contact.id}-{index}.mp4",
                    content_type="audio/mp4",
                    body=self._audio.mp4(item.audio),
                    spec=item.media,
                    expired_status=self.settings.expired_status,
                )
            )
        self.notify()

    def ready(self, contact: PlaybackContact) -> bool:
        return time.monotonic() - self._called_at[contact.id][0] >= contact.not_ready_s

    def issue_token(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.urls.get("auth", ""),
            "sub": f"user:{uuid.uuid5(uuid.NAMESPACE_URL, self.access_key_id)}",
            "aud": self.client_id,
            "tenantId": self.tenant_id,
            "iat": now,
            "exp": now + max(1, int(self.token_ttl)),
            "jti": secrets.token_hex(8),
        }
        token = make_jwt(claims, self._jwt_key)
        self.tokens[token] = time.monotonic() + self.token_ttl
        self.tokens_issued += 1
        self.notify()
        return token

    def contact_body(
        self, contact: PlaybackContact, *, voice: bool, waveforms: bool, download: bool
    ) -> Any:
        """The documented lookup answer, with a fresh media URL per voice file."""
        seconds = [MP4_SECONDS[f.audio] for f in contact.files] if voice else []
        at = self._called_at[contact.id][1] - sum(seconds)
        interactions = []
        for index, length in enumerate(seconds, 1):
            url = self.media.url(media_key(contact.id, index))
            start, end = iso(at), iso(at + length)
            segment = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{contact.id}/{index}"))
            data: dict[str, Any] = {
                "startTime": start,
                "endTime": end,
                "acwEndTime": iso(at + length + 5),
                "fileToPlayUrl": url,
                "waveformDataList": [{"channel": 0, "normalizedPcmData": [0, 12, 40, 7]}]
                if waveforms
                else [],
                "participantDataList": [
                    {"participantType": kind, "segmentId": segment, "channel": channel}
                    for channel, kind in enumerate(("AGENT", "CUSTOMER"))
                ],
                "segmentsDataList": [
                    {
                        "startTime": start,
                        "endTime": end,
                        "segmentId": segment,
                        "directionType": "INBOUND",
                        "channelType": "PHONE_CALL",
                        "firstSegment": index == 1,
                    }
                ],
                "categoryMatchesList": [],
                "sentiments": [],
                "dfoStages": [],
            }
            if download:
                data["redirectUrl"] = url
            interactions.append(
                {
                    "mediaType": "voice-only",
                    "channelType": "PHONE_CALL",
                    "startTime": start,
                    "endTime": end,
                    "@type": "call",
                    "data": data,
                    "callTaggingList": [],
                    "dynamicBusinessData": [],
                }
            )
            at += length
        return {
            "contactId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"contact/{contact.id}")),
            "acdcontactId": contact.id,
            "elevatedInteraction": False,
            "interactions": interactions,
        }

    def snapshot(self) -> dict[str, Any]:
        out = super().snapshot()
        out["discovery"] = dict(self.discovery)
        out["unknown_lookups"] = self.unknown_lookups
        out["contacts"] = {
            cid: {"lookups": len(statuses), "statuses": statuses}
            for cid, statuses in self.lookups.items()
        }
        return out


PLAYBACK_KEY = web.AppKey("cxstream_sim_playback", PlaybackState)


def api_error(status: int, code: str, message: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return json_response({"internalCode": code, "message": message}, status, headers)


def throttle(retry_after: int | None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return json_response({"message": "Too Many Requests", "route": ROUTE}, 429, headers)


# -- API host ------------------------------------------------------------------


async def handle_contacts(request: web.Request) -> web.StreamResponse:
    state = request.app[PLAYBACK_KEY]
    if not state.token_valid(bearer_token(request)):
        return api_error(401, "UNAUTHORIZED", "Invalid or expired token")
    wait = state.throttled()
    if wait is not None:
        retry = max(1, round(wait)) if state.settings.rate_limit_retry_after else None
        return throttle(retry)
    query = request.query
    contact_id = query.get("acd-call-id")
    media_types = [t for v in query.getall("media-type", ["all"]) for t in v.split(",")]
    if not contact_id:
        return api_error(400, "BAD_REQUEST", "acd-call-id is required")
    if any(t not in MEDIA_TYPES for t in media_types):
        return api_error(400, "BAD_REQUEST", f"media-type must be among {', '.join(MEDIA_TYPES)}")
    flags = {k: query.get(k, "false").lower() for k in ("exclude-waveforms", "isDownload")}
    if any(v not in ("true", "false") for v in flags.values()):
        return api_error(400, "BAD_REQUEST", "exclude-waveforms and isDownload are true or false")
    contact = state.contacts.get(contact_id)
    if contact is None:
        state.unknown_lookups += 1
        state.notify()
        return api_error(404, "NOT_FOUND", "Interaction not found")
    statuses = state.lookups[contact.id]
    resp = _lookup(request, state, contact, len(statuses) + 1, media_types, flags)
    statuses.append(resp.status)
    state.notify()
    return resp


def _lookup(
    request: web.Request,
    state: PlaybackState,
    contact: PlaybackContact,
    number: int,
    media_types: list[str],
    flags: dict[str, str],
) -> web.Response:
    kinds = {f.kind: f for f in contact.faults if f.applies(number)}
    if "expire_token" in kinds:
        state.revoke(bearer_token(request))
        return api_error(401, "UNAUTHORIZED", "Invalid or expired token")
    if "throttle" in kinds:
        return throttle(kinds["throttle"].retry_after)
    if "throttle_bare" in kinds:
        return throttle(None)
    if "status" in kinds:
        fault = kinds["status"]
        return api_error(fault.status, "SERVICE_UNAVAILABLE", "Try again", fault.retry_after)
    if "not_found" in kinds or not state.ready(contact):
        return api_error(404, "NOT_FOUND", "Interaction not found")
    body = state.contact_body(
        contact,
        voice=bool(VOICE_TYPES.intersection(media_types)),
        waveforms=flags["exclude-waveforms"] == "false",
        download=flags["isDownload"] == "true",
    )
    return json_response(body)


def build_api_app(state: PlaybackState) -> web.Application:
    app = web.Application()
    app[PLAYBACK_KEY] = state
    app.router.add_get(ROUTE, handle_contacts, allow_head=False)
    return app
