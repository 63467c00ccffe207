"""The media host: recordings at expiring signed URLs, as CXone and Genesys hand out.

Both platforms answer a lookup with a temporary URL fetched by a plain GET,
without an ``Authorization`` header (platforms.md). This host serves each
registered file at ``/media/<key>/<filename>?Expires=<unix s>&n=<serial>&Signature=<hmac>``:
the query is the credential. A URL stops working when ``Expires`` passes,
when :meth:`MediaHost.expire_urls` revokes every URL issued so far, or on an
``expired`` fault. Per file, the host honours ``Range`` (206) or ignores it
(200), sends ``Content-Length`` or chunked, and misbehaves on chosen requests:
stall, cut, trickle, a flipped byte, junk after the body, a 5xx/429.

An ``Authorization`` header is ignored, but counted, so tests can assert the
client sends none.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from aiohttp import hdrs, web

from cxstream.sim.delivery import deliver
from cxstream.sim.faults import Plan, flip_byte
from cxstream.sim.platform_spec import MediaSpec
from cxstream.sim.spec import FaultSpec

_RANGE_RE = re.compile(r"bytes=(\d+)-(\d*)")
_S3_ERROR = (
    "<?xml version='1.0' encoding='UTF-8'?>"
    "<Error><Code>{code}</Code><Message>{message}</Message></Error>"
)
JUNK = b"<html><body>junk after the media</body></html>\n"


@dataclass(frozen=True, slots=True)
class MediaFile:
    key: str
    filename: str
    content_type: str
    body: bytes
    spec: MediaSpec
    expired_status: int = 403


@dataclass
class DownloadLog:
    range: str | None
    authorization: bool
    status: int = 0
    bytes: int = 0
    faults: list[str] = field(default_factory=list)


@dataclass
class MediaStats:
    urls_issued: int = 0
    requests: int = 0
    bytes_served: int = 0
    auth_headers: int = 0
    active: int = 0
    downloads: list[DownloadLog] = field(default_factory=list)


def parse_range(header: str | None, total: int) -> tuple[int, int] | None:
    """``(first, last)`` for a single ``bytes=N-[M]``; None for absent or unusable (RFC 9110:
    a server may ignore a Range it does not understand)."""
    match = _RANGE_RE.fullmatch(header.strip()) if header else None
    if match is None:
        return None
    first = int(match.group(1))
    if match.group(2) and int(match.group(2)) < first:
        return None  # syntactically invalid: ignored
    last = int(match.group(2)) if match.group(2) else total - 1
    # first >= total comes back as is: unsatisfiable, a 416 for the caller.
    return first, min(last, total - 1)


class MediaHost:
    def __init__(
        self, notify: Callable[[], None], shutdown: asyncio.Event, url_ttl_s: float
    ) -> None:
        self.files: dict[str, MediaFile] = {}
        self.stats: dict[str, MediaStats] = {}
        self.url_ttl_s = url_ttl_s
        self.base_url = ""  # set once the host listens
        self._notify = notify
        self._shutdown = shutdown
        self._secret = secrets.token_bytes(32)
        self._serial = 0
        self._revoked_below = 0

    def add(self, media: MediaFile) -> None:
        """Register (or replace, with fresh counters) a file."""
        self.files[media.key] = media
        self.stats[media.key] = MediaStats()

    def _signature(self, key: str, expires: int, serial: int) -> str:
        message = f"{key}\n{expires}\n{serial}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def url(self, key: str) -> str:
        """A fresh signed URL for ``key``, valid for ``url_ttl_s``."""
        media = self.files[key]
        self._serial += 1
        expires = int(time.time() + self.url_ttl_s)
        signature = self._signature(key, expires, self._serial)
        query = urlencode({"Expires": expires, "n": self._serial, "Signature": signature})
        self.stats[key].urls_issued += 1
        self._notify()
        return f"{self.base_url}/media/{key}/{media.filename}?{query}"

    def expire_urls(self) -> None:
        """Every URL issued so far answers as expired from now on."""
        self._revoked_below = self._serial + 1

    def _verdict(self, key: str, request: web.Request) -> str | None:
        """None for a good URL, else "expired" or "denied"."""
        try:
            expires = int(request.query["Expires"])
            serial = int(request.query["n"])
            signature = request.query["Signature"]
        except (KeyError, ValueError):
            return "denied"
        expected = self._signature(key, expires, serial)
        # Bytes: compare_digest refuses a str with non-ASCII characters.
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            return "denied"
        if time.time() >= expires or serial < self._revoked_below:
            return "expired"
        return None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        media = self.files.get(key)
        if media is None or request.match_info["filename"] != media.filename:
            return _error(404, "NoSuchKey", "The specified key does not exist.")
        stats = self.stats[key]
        stats.requests += 1
        log = DownloadLog(
            range=request.headers.get(hdrs.RANGE),
            authorization=hdrs.AUTHORIZATION in request.headers,
        )
        stats.auth_headers += int(log.authorization)
        stats.downloads.append(log)
        active = [f for f in media.spec.faults if f.applies(stats.requests)]
        log.faults = [f.kind for f in active]
        kinds = {f.kind: f for f in active}
        verdict = self._verdict(key, request)
        if verdict is None and "expired" in kinds:
            verdict = "expired"
        if verdict == "denied":
            resp = _error(403, "SignatureDoesNotMatch", "The request signature is not valid.")
        elif verdict == "expired":
            resp = _error(media.expired_status, "AccessDenied", "Request has expired")
        elif "status" in kinds:
            fault = kinds["status"]
            resp = _error(fault.status, "SlowDown", "Please reduce your request rate.")
            resp.headers[hdrs.RETRY_AFTER] = str(fault.retry_after)
        else:
            return await self._serve(request, media, stats, log, kinds)
        log.status = resp.status
        self._notify()
        return resp

    async def _serve(
        self,
        request: web.Request,
        media: MediaFile,
        stats: MediaStats,
        log: DownloadLog,
        faults: dict[str, FaultSpec],
    ) -> web.StreamResponse:
        body = media.body
        if "corrupt" in faults:
            body = flip_byte(body, faults["corrupt"].at_byte)
        if "junk_tail" in faults:
            need = faults["junk_tail"].junk_bytes
            body += (JUNK * (need // len(JUNK) + 1))[:need]
        total = len(body)
        span = parse_range(log.range, total) if media.spec.range else None
        if span is not None and span[0] >= total:
            refused = _error(416, "InvalidRange", "The requested range is not satisfiable")
            refused.headers[hdrs.CONTENT_RANGE] = f"bytes */{total}"
            log.status = 416
            self._notify()
            return refused
        first, last = span if span is not None else (0, total - 1)
        resp = web.StreamResponse(status=206 if span is not None else 200)
        resp.content_type = media.content_type
        if media.spec.range:
            resp.headers[hdrs.ACCEPT_RANGES] = "bytes"
        if span is not None:
            resp.headers[hdrs.CONTENT_RANGE] = f"bytes {first}-{last}/{total}"
        if media.spec.chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = last + 1 - first
        stall, cut, trickle = (faults.get(k) for k in ("stall", "truncate", "trickle"))
        plan = Plan(
            body=body,
            digest="",
            stall_after=stall.after_bytes if stall else None,
            truncate_after=cut.after_bytes if cut else None,
            bytes_per_second=trickle.bytes_per_second if trickle else None,
        )
        if plan.stall_after is not None and plan.truncate_after is not None:
            plan = _first_of(plan)
        log.status = resp.status

        def count(n: int) -> None:
            stats.bytes_served += n
            log.bytes += n
            self._notify()

        stats.active += 1
        self._notify()
        try:
            await resp.prepare(request)
            view = memoryview(body)[first : last + 1]
            await deliver(request, resp, view, plan, count, self._shutdown)
        finally:
            stats.active -= 1
            self._notify()
        return resp

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/media/{key}/{filename}", self.handle, allow_head=False)
        return app


def _first_of(plan: Plan) -> Plan:
    """Of a stall and a cut on one request, the earlier one happens."""
    assert plan.stall_after is not None and plan.truncate_after is not None
    if plan.truncate_after < plan.stall_after:
        return Plan(plan.body, "", None, plan.truncate_after, plan.bytes_per_second)
    return Plan(plan.body, "", plan.stall_after, None, plan.bytes_per_second)


def _error(status: int, code: str, message: str) -> web.Response:
    """An object-store style XML error (what pre-signed URL hosts answer)."""
    return web.Response(
        status=status,
        text=_S3_ERROR.format(code=code, message=message),
        content_type="application/xml",
    )
