"""Source ``genesys``: Genesys Cloud's Recording API (platforms.md).

Token: client credentials from ``login.<region>``. A conversation's
recordings: ``GET /api/v2/conversations/{id}/recordings?formatId=…``; one
recording: ``…/recordings/{recordingId}?formatId=…``. Transcoding takes time:
a 202, empty ``mediaUris`` or ``outputSizeInBytes = 0`` is "poll again"
(honouring ``estimatedTranscodeTimeMs``), paid from ``source.not_ready_grace_s``.
``fileState`` ARCHIVED, DELETED or ERROR is a permanent failure naming the
state. Genesys publishes no checksum: the file is held to
``outputSizeInBytes``, its container and ``outputDurationMs``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from cxstream.config import CxoneConfig, GenesysConfig
from cxstream.fetcher.cxone import read_bounded
from cxstream.fetcher.download import UrlMedia, status_error
from cxstream.fetcher.errors import (
    CodecUnavailable,
    FetchError,
    NotReady,
    PermanentError,
)
from cxstream.fetcher.ratelimit import RateLimiter
from cxstream.fetcher.source import Expect, Target
from cxstream.fetcher.token import Grant, TokenSource
from cxstream.formats import registry
from cxstream.ingress.event import safe_name
from cxstream.journal import Job

FORMATS = {"OGG_OPUS": registry.OPUS, "WAV": registry.WAV}
_BY_FORMAT = {f.name: code for code, f in FORMATS.items()}
_GONE_STATES = ("ARCHIVED", "DELETED", "ERROR")
_WAIT_STATES = ("UPLOADING", "RESTORING")
_MAX_WAIT_MS = 5000


def _media_uri(body: dict[str, Any]) -> str | None:
    uris = body.get("mediaUris")
    if not isinstance(uris, dict):
        return None
    # The map's keys are undocumented: take the first entry with a URL.
    for entry in uris.values():
        uri = entry.get("mediaUri") if isinstance(entry, dict) else None
        if isinstance(uri, str) and uri.startswith(("https://", "http://")):
            return uri
    return None


def _wait_hint(body: dict[str, Any]) -> float | None:
    ms = body.get("estimatedTranscodeTimeMs")
    return ms / 1000 if isinstance(ms, int | float) and ms > 0 else None


def _list_hint(body: Any) -> float | None:
    """The longest ``estimatedTranscodeTimeMs`` of the listed recordings still without media."""
    hints = [
        _wait_hint(rec)
        for rec in (body if isinstance(body, list) else [])
        if isinstance(rec, dict) and _media_uri(rec) is None
    ]
    return max((h for h in hints if h is not None), default=None)


def check_state(body: dict[str, Any]) -> None:
    """``fileState`` wins over an empty ``mediaUris``: some states end the job."""
    state = str(body.get("fileState") or "").upper()
    if state in _GONE_STATES:
        detail = body.get("recordingErrorStatus") or body.get("archiveDate") or None
        raise PermanentError(f"file_state_{state.lower()}", None if detail is None else str(detail))
    if state in _WAIT_STATES:
        raise NotReady(f"file_state_{state.lower()}", retry_after=_wait_hint(body))


class GenesysSource:
    kind = "genesys"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: GenesysConfig,
        limits: CxoneConfig,
        limiter: RateLimiter,
        on_token: Any = None,
        idle_timeout_s: float | None = None,
    ) -> None:
        self._session = session
        self._cfg = config
        # The API holds a list request up to maxWaitMs while it transcodes, and
        # the job's watchdog gives a control call streams.idle_timeout_s: a
        # longer hold would be cut as a stall and charged as an attempt.
        self._max_wait_ms = _MAX_WAIT_MS
        if idle_timeout_s is not None:
            self._max_wait_ms = max(0, min(_MAX_WAIT_MS, int(idle_timeout_s * 500)))
        self._max_control = limits.max_control_bytes
        self._limiter = limiter
        assert config.client_secret is not None
        grant = Grant(
            config.client_id,
            config.client_secret,
            connect_timeout_s=limits.connect_timeout_s,
            refresh_margin_s=limits.token_refresh_margin_s,
            max_bytes=limits.max_control_bytes,
        )
        self._tokens = TokenSource(
            session, grant, f"{config.login_url}/oauth/token", on_refresh=on_token
        )

    async def _get(self, path: str, params: dict[str, str]) -> tuple[int, Any]:
        """(status, JSON body) of a 200 or 202; anything else raised, classified."""
        for second_try in (False, True):
            token = await self._tokens.get()
            await self._limiter.acquire()
            try:
                async with self._session.get(
                    f"{self._cfg.api_url}{path}",
                    params=params,
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                ) as resp:
                    if resp.status == 401 and not second_try:
                        self._tokens.invalidate(token)
                        continue
                    if resp.status == 429:
                        self._limiter.throttled()
                    if resp.status not in (200, 202):
                        raise await self._error(resp)
                    raw = await read_bounded(resp, self._max_control, "api")
                    status = resp.status
            except aiohttp.ClientError as exc:
                raise FetchError("api_unreachable", exc.__class__.__name__) from None
            try:
                return status, orjson.loads(raw) if raw.strip() else None
            except orjson.JSONDecodeError:
                raise FetchError("api_malformed", "not JSON") from None
        raise FetchError("api_http_401", status=401)

    async def _error(self, resp: aiohttp.ClientResponse) -> FetchError:
        err = status_error(resp, "api")
        raw = await resp.content.read(16 * 1024)
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = {}
        code = body.get("code") if isinstance(body, dict) else None
        if isinstance(code, str) and code:
            err.detail = code[:80]
        return err

    async def resolve(self, job: Job) -> tuple[Target, ...]:
        conversation = job.contact_id
        if conversation is None:
            raise PermanentError("contact_required", "genesys needs the conversation id")
        if job.scope == "recording":
            ref = job.source_ref or job.original_name or job.recording_id
            return (self._target(job.recording_id, ref, conversation),)
        status, body = await self._list(conversation)
        if status == 202 or not isinstance(body, list) or not body:
            # The conversation just ended: its recordings are not listed yet.
            raise NotReady("recordings_not_listed_yet", status=status, retry_after=_list_hint(body))
        targets = []
        for rec in body:
            rid = rec.get("id") if isinstance(rec, dict) else None
            if isinstance(rid, str) and rid:
                targets.append(self._target(safe_name(rid)[0], rid, conversation))
        if not targets:
            raise FetchError("api_malformed", "recordings without ids")
        return tuple(targets)

    async def _list(self, conversation: str) -> tuple[int, Any]:
        """The conversation's recordings, asked in the first format (so transcoding
        starts now); if the API refuses that format for the list, with none."""
        path = f"/api/v2/conversations/{quote(conversation, safe='')}/recordings"
        params = {"formatId": self._cfg.formats[0], "maxWaitMs": str(self._max_wait_ms)}
        try:
            return await self._get(path, params)
        except PermanentError as err:
            if err.status not in (400, 415, 422):
                raise
            return await self._get(path, {**params, "formatId": "NONE"})

    def _target(self, name: str, ref: str, conversation: str) -> Target:
        formats = tuple(FORMATS[f].name for f in self._cfg.formats)
        extra = {"conversationId": conversation, "genesysRecordingId": ref}
        return Target(name=name, formats=formats, ref=ref, extra=extra)

    async def _recording(self, conversation: str, ref: str, fmt: str) -> dict[str, Any]:
        path = f"/api/v2/conversations/{quote(conversation, safe='')}/recordings"
        try:
            status, body = await self._get(
                f"{path}/{quote(ref, safe='')}",
                {"formatId": _BY_FORMAT[fmt], "download": "false"},
            )
        except PermanentError as err:
            if err.status in (400, 406, 415, 422):
                # A bad request for a recording that exists is about the format
                # asked for (the API documents no finer signal): the next one.
                raise CodecUnavailable(
                    "format_unavailable", err.detail, status=err.status
                ) from None
            raise
        if not isinstance(body, dict):
            if status == 202:
                raise NotReady("transcoding", status=202)
            raise FetchError("api_malformed", "recording is not an object")
        check_state(body)
        if body.get("recordingErrorStatus"):
            # An error for this format, not a wait: the next format is asked.
            raise CodecUnavailable("format_error", str(body["recordingErrorStatus"])[:80])
        uri = _media_uri(body)
        size = body.get("outputSizeInBytes")
        if status == 202 or uri is None or not size:
            raise NotReady("transcoding", status=status, retry_after=_wait_hint(body))
        return body

    async def media(self, job: Job, target: Target, fmt: str) -> UrlMedia:
        conversation, ref = job.contact_id, target.ref
        assert conversation is not None and ref is not None
        body = await self._recording(conversation, ref, fmt)

        async def refresh() -> str:
            fresh = _media_uri(await self._recording(conversation, ref, fmt))
            if fresh is None:
                raise NotReady("transcoding")
            return fresh

        duration_ms = body.get("outputDurationMs")
        expect = Expect(
            size=int(body["outputSizeInBytes"]),
            duration_s=duration_ms / 1000 if isinstance(duration_ms, int | float) else None,
        )
        uri = _media_uri(body)
        assert uri is not None
        return UrlMedia(self._session, registry.get(fmt), expect, uri, refresh)

    def forget(self, job: Job) -> None:
        pass
