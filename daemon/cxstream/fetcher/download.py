"""A recording behind a temporary media URL: one piece, fetched without credentials.

Both real platforms answer a recording request with a pre-signed URL (CXone's
``fileToPlayUrl``, Genesys's ``mediaUris``). The URL is itself the credential:
it is never sent an ``Authorization`` header, and audit lines show only its
host and path, never its query string. An expired URL (401/403/404/410 from
the media host) is asked for again from the platform's API and the download
resumes; a host that ignores ``Range`` restarts the file from byte 0 (the
shared streamer's rule).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import aiohttp

from cxstream.fetcher.errors import (
    FetchError,
    Interrupted,
    PermanentError,
    RangeNotSatisfiable,
    Throttled,
    parse_retry_after,
)
from cxstream.fetcher.source import Expect, Piece
from cxstream.fetcher.transport import resume_from
from cxstream.formats.registry import Format

_EXPIRED = (401, 403, 404, 410)
_MAX_REDIRECTS = 5


def public_part(url: str) -> str:
    """scheme://host/path: what may be logged of a pre-signed URL."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def status_error(resp: aiohttp.ClientResponse, what: str) -> FetchError:
    """A non-success answer of a media host or a platform API, classified."""
    status = resp.status
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    code = f"{what}_http_{status}"
    if status == 429 or (status == 503 and retry_after is not None):
        return Throttled(code, status=status, retry_after=retry_after)
    if 400 <= status < 500 and status not in (408, 425):
        return PermanentError(code, status=status)
    return FetchError(code, status=status, retry_after=retry_after)


class UrlMedia:
    """One file at a URL that may expire; ``refresh`` asks the platform for a new one."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        fmt: Format,
        expect: Expect,
        url: str,
        refresh: Callable[[], Awaitable[str]],
    ) -> None:
        self._session = session
        self.fmt = fmt
        self.expect = expect
        self._url = url
        self._refresh = refresh
        self.units = 1
        self.max_bytes = expect.size
        checks = []
        if expect.size is not None:
            checks.append("size")
        if expect.duration_s is not None:
            checks.append("duration")
        self.verified_by: tuple[str, ...] = tuple(checks)
        self.segments: list[dict[str, int]] = []

    def piece(self, done: int) -> Piece:
        return Piece(key=(0,), units=1, label="0", where=public_part(self._url))

    def narrow(self, max_segments: int | None, piece: Piece) -> bool:
        return False

    @asynccontextmanager
    async def open(self, piece: Piece, start: int) -> AsyncIterator[aiohttp.ClientResponse]:
        resp = await self._session.get(
            self._url, headers=resume_from(start), max_redirects=_MAX_REDIRECTS
        )
        try:
            if resp.status in _EXPIRED:
                # The URL's signature ran out (or never was): a fresh one from
                # the API, then the loop resumes where the bytes stopped.
                self._url = await self._refresh()
                raise Interrupted("media_url_expired", status=resp.status)
            if resp.status == 416:
                raise RangeNotSatisfiable("media_range_not_satisfiable", length=_length(resp))
            if resp.status not in (200, 206):
                raise status_error(resp, "media")
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype in ("application/json", "text/html", "application/xml", "text/xml"):
                # An error page wearing status 200: never audio, never written.
                raise FetchError("media_not_audio", ctype, status=resp.status)
            yield resp
        finally:
            resp.release()


def _length(resp: aiohttp.ClientResponse) -> int | None:
    value = resp.headers.get("Content-Range", "").strip()
    if value.startswith("bytes */") and value[8:].isdigit():
        return int(value[8:])
    return None
