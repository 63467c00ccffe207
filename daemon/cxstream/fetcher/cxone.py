"""The CXone recording API (contract §1) as typed calls; errors classified here.

Every control body (metadata, errors) is read up to a bound (``read_bounded``):
a server that answers with megabytes where kilobytes are expected costs one
attempt, not the process's memory.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from cxstream.config import CxoneConfig
from cxstream.fetcher.errors import (
    CodecUnavailable,
    FetchError,
    PermanentError,
    RangeNotSatisfiable,
    SegmentLimit,
    Throttled,
    parse_retry_after,
)
from cxstream.fetcher.ratelimit import RateLimiter
from cxstream.fetcher.token import TokenSource
from cxstream.fetcher.transport import read_bounded, resume_from
from cxstream.planner import Batch, Segment

# An error body is a code and a few fields; past this it is not worth reading.
_ERROR_BODY_LIMIT = 64 * 1024

__all__ = ["CxoneClient", "RecordingMeta", "parse_metadata", "read_bounded"]


@dataclass(frozen=True, slots=True)
class CodecInfo:
    content_type: str
    bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class RecordingMeta:
    recording_id: str
    duration_seconds: int
    max_duration: int
    max_segments: int
    segments: tuple[Segment, ...]
    codecs: dict[str, CodecInfo]


def parse_metadata(raw: Any, max_segments: int = 1_000_000) -> RecordingMeta:
    try:
        if len(raw["segments"]) > max_segments:
            raise PermanentError(
                "metadata_too_many_segments", f"{len(raw['segments'])} > {max_segments}"
            )
        codecs = {
            name: CodecInfo(str(c["contentType"]), int(c["bytes"]), str(c["sha256"]).lower())
            for name, c in raw["codecs"].items()
        }
        segments = tuple(Segment(int(s["offset"]), int(s["duration"])) for s in raw["segments"])
        meta = RecordingMeta(
            recording_id=str(raw["recordingId"]),
            duration_seconds=int(raw.get("durationSeconds", sum(s.duration for s in segments))),
            max_duration=int(raw["maxDuration"]),
            max_segments=int(raw["maxSegmentsPerRequest"]),
            segments=segments,
            codecs=codecs,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        raise FetchError("metadata_malformed") from None
    except PermanentError:
        raise
    if not segments or meta.max_segments < 1 or meta.max_duration < 1:
        raise FetchError("metadata_malformed")
    return meta


async def _error_from(resp: aiohttp.ClientResponse, limit: int = _ERROR_BODY_LIMIT) -> FetchError:
    """Turn a non-audio answer into the exception that says what to do next.

    The status decides; the body only adds CXone's code (and a 413's limit). A
    body that is not small JSON (too large, coded, HTML, cut) is ignored whole.
    """
    try:
        raw = await read_bounded(resp, limit, "error")
        body = orjson.loads(raw) if raw else {}
    except (FetchError, aiohttp.ClientError, orjson.JSONDecodeError, TimeoutError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("error") or f"http_{resp.status}")[:64]
    status = resp.status
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    if status == 406:
        return CodecUnavailable(code, status=status)
    if status == 416:
        match = re.fullmatch(r"bytes \*/(\d+)", resp.headers.get("Content-Range", "").strip())
        return RangeNotSatisfiable(code, length=int(match.group(1)) if match else None)
    if status == 413:
        allowed = body.get("maxSegments")
        if isinstance(allowed, bool) or not isinstance(allowed, int) or allowed < 1:
            allowed = None
        return SegmentLimit(code, status=status, max_segments=allowed)
    if status in (400, 404, 416) or (400 <= status < 500 and status not in (401, 408, 429)):
        return PermanentError(code, status=status)
    if status in (429, 503) and retry_after is not None:
        return Throttled(code, status=status, retry_after=retry_after)
    return FetchError(code, status=status, retry_after=retry_after)


class CxoneClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: CxoneConfig,
        tokens: TokenSource,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._session = session
        self._limiter = limiter
        self._base = config.base_url
        self._tokens = tokens
        self._max_control = config.max_control_bytes
        self._max_error = min(_ERROR_BODY_LIMIT, config.max_control_bytes)
        self._max_segments = config.max_segments

    def _url(self, recording_id: str, suffix: str = "") -> str:
        return f"{self._base}/api/v2/recordings/{quote(recording_id, safe='')}{suffix}"

    @asynccontextmanager
    async def _get(
        self, url: str, params: dict[str, str] | None, headers: dict[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET with the bearer token; a 401 refreshes it and repeats the call once."""
        for second_try in (False, True):
            token = await self._tokens.get()
            if self._limiter is not None:
                await self._limiter.acquire()
            resp = await self._session.get(
                url,
                params=params,
                headers={**headers, "Authorization": f"Bearer {token}"},
                allow_redirects=False,
            )
            if resp.status == 429 and self._limiter is not None:
                self._limiter.throttled()
            if resp.status == 401 and not second_try:
                resp.release()
                self._tokens.invalidate(token)
                continue
            try:
                yield resp
            finally:
                resp.release()
            return

    async def metadata(self, recording_id: str) -> RecordingMeta:
        try:
            async with self._get(self._url(recording_id), None, {}) as resp:
                if resp.status != 200:
                    raise await _error_from(resp, self._max_error)
                body = await read_bounded(resp, self._max_control, "metadata")
                try:
                    raw = orjson.loads(body)
                except orjson.JSONDecodeError:
                    raise FetchError("metadata_malformed") from None
        except aiohttp.ClientError as exc:
            raise FetchError("metadata_unreachable", exc.__class__.__name__) from None
        return parse_metadata(raw, self._max_segments)

    @asynccontextmanager
    async def stream(
        self, recording_id: str, codec: str, batch: Batch, max_duration: int, start: int
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Open one stream request; yields a 200/206 whose body is audio, else raises."""
        params = {
            "offsets": batch.offsets_param,
            "codec": codec,
            "maxDuration": str(max_duration),
        }
        # The session asks for identity: a compressed representation would make
        # Range offsets and Repr-Digest refer to different bytes.
        headers = resume_from(start)
        async with self._get(self._url(recording_id, "/stream"), params, headers) as resp:
            if resp.status not in (200, 206):
                raise await _error_from(resp, self._max_error)
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype == "application/json" or ctype.endswith("+json"):
                # A JSON error wearing status 200: never audio, never written.
                err = await _error_from(resp, self._max_error)
                raise FetchError(
                    err.code if err.code != "http_200" else "json_with_200",
                    status=200,
                    retry_after=err.retry_after,
                )
            yield resp
