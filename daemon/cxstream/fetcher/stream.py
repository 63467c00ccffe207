"""One response of one piece, streamed to the part file: the body of the GET loop.

``PieceStreamer.attempt`` opens the piece from the part file's position
(``Range`` when resuming), streams it chunk by chunk under the idle
watchdog, holds every byte to what the piece may legitimately hold, and
returns once the piece is complete and verified. Any failure is raised as
its class (see ``errors.py``); the job's loop decides what happens next.
What the responses said of the piece (its size, its digest) is kept in a
``PieceState`` across attempts.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from cxstream.audit import AuditLog
from cxstream.fetcher.errors import (
    FetchError,
    Interrupted,
    RangeNotSatisfiable,
    VerificationError,
)
from cxstream.fetcher.source import Media, Piece
from cxstream.fetcher.transport import content_coding
from cxstream.fetcher.watchdog import Watchdog
from cxstream.metrics import Metrics
from cxstream.sink.digest import DigestHeaderError, parse_repr_digest
from cxstream.sink.part import ContainerError, PartFile

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@dataclass(frozen=True, slots=True)
class StreamSettings:
    idle_timeout_s: float
    chunk_bytes: int
    checkpoint_bytes: int
    # Framing a container may add beyond a size we could only estimate.
    margin_bytes: int = 64 * 1024
    # The bound for a file whose platform says nothing of its size.
    unknown_size_cap: int = 2 * 1024**3


class PieceState:
    """What the responses of one piece said of it, and whether bytes moved."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.digest: bytes | None = None
        self._mark = -1

    def forget(self) -> None:
        self.total = None
        self.digest = None

    def progressed(self, part: PartFile) -> bool:
        """True when bytes arrived since the last time this was asked."""
        moved = part.position > self._mark
        self._mark = part.position
        return moved


class PieceStreamer:
    def __init__(self, *, settings: StreamSettings, audit: AuditLog, metrics: Metrics) -> None:
        self._settings = settings
        self._audit = audit
        self._metrics = metrics
        self.ttfb_ms: float | None = None

    async def attempt(
        self,
        media: Media,
        piece: Piece,
        part: PartFile,
        state: PieceState,
        *,
        attempt: int,
        checkpoint: Callable[[], Awaitable[None]],
    ) -> None:
        """Until the piece is on disk and verified, or raise what went wrong."""
        if state.total is None or part.batch_bytes != state.total:
            try:
                await self._response(media, piece, part, state, attempt, checkpoint)
            except RangeNotSatisfiable as err:
                if not part.batch_bytes:
                    raise
                if err.length != part.batch_bytes:
                    # Our idea of the piece and the server's disagree: start it over.
                    raise VerificationError(err.code, "resume past the end", status=416) from None
                state.total = err.length  # every byte is here already
            except ContainerError as exc:
                raise VerificationError("container_invalid", str(exc)) from None
            except DigestHeaderError as exc:
                raise VerificationError("repr_digest_malformed", str(exc)) from None
            except (aiohttp.ClientError, ConnectionError) as exc:
                # Cut connections, broken chunked framing, an unparseable
                # response head: the bytes on disk are good, resume after them.
                raise Interrupted("connection_lost", exc.__class__.__name__) from None
        # else: every byte arrived before the stall or cut; only the
        # end-of-body marker was missing. Nothing left to ask for.
        await self._finish(part, piece, state)

    async def _finish(self, part: PartFile, piece: Piece, state: PieceState) -> None:
        if state.total is not None and part.batch_bytes != state.total:
            raise VerificationError("body_length_mismatch", f"{part.batch_bytes} of {state.total}")
        if state.digest is None:
            if piece.need_digest:
                raise VerificationError("repr_digest_missing")
        elif await part.batch_digest() != state.digest:
            raise VerificationError("repr_digest_mismatch")
        try:
            part.end_batch()
        except ContainerError as exc:
            raise VerificationError("container_invalid", str(exc)) from None

    def _limit(self, media: Media, part: PartFile, state: PieceState) -> int:
        """The most bytes this piece's body may hold (from the piece's first byte)."""
        settings = self._settings
        if media.max_bytes is None:
            ceiling = settings.unknown_size_cap - part.source_bytes_before_batch
        else:
            ceiling = media.max_bytes - part.source_bytes_before_batch + settings.margin_bytes
        return ceiling if state.total is None else min(ceiling, state.total)

    async def _response(
        self,
        media: Media,
        piece: Piece,
        part: PartFile,
        state: PieceState,
        attempt: int,
        checkpoint: Callable[[], Awaitable[None]],
    ) -> None:
        settings = self._settings
        start = part.batch_bytes
        where = {} if piece.where is None else {"url": piece.where}
        self._audit.info(
            "stream.request",
            offsets=piece.label,
            codec=media.fmt.name,
            range_start=start,
            attempt=attempt,
            **where,
        )
        sent = time.monotonic()
        async with (
            Watchdog(settings.idle_timeout_s) as dog,
            media.open(piece, start) as resp,
        ):
            # The watchdog times the network only: our own disk and journal
            # work happens with it paused, so a slow fsync is never a "stall".
            dog.pause()
            self._metrics.requests.labels(status=str(resp.status)).inc()
            _refuse_encoding(resp)
            expected = parse_repr_digest(resp.headers.get("Repr-Digest"))
            state.total = await self._position(resp, part, start)
            if expected is not None or start == 0:
                state.digest = expected
            limit = self._limit(media, part, state)
            if state.total is not None and state.total > limit:
                raise VerificationError(
                    "body_too_large", f"response declares {state.total} bytes, at most {limit}"
                )
            while True:
                dog.ping()
                chunk = await resp.content.read(settings.chunk_bytes)
                dog.pause()
                if not chunk:
                    break
                if part.batch_bytes + len(chunk) > limit:
                    # Not one byte past what the piece can hold reaches the disk.
                    raise VerificationError("body_too_large", f"more than {limit} bytes")
                if self.ttfb_ms is None:
                    self.ttfb_ms = (time.monotonic() - sent) * 1000
                    self._metrics.ttfb.observe(self.ttfb_ms / 1000)
                await part.write(chunk)
                self._metrics.bytes.inc(len(chunk))
                if part.unsynced_bytes >= settings.checkpoint_bytes:
                    await checkpoint()

    async def _position(
        self, resp: aiohttp.ClientResponse, part: PartFile, start: int
    ) -> int | None:
        """Line the part file up with where this response's body starts; the piece's size."""
        if resp.status == 206:
            match = _CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", "").strip())
            if not start or not match or int(match.group(1)) != start:
                # A range we did not ask for: nothing in it can be placed safely.
                await part.restart_batch()
                raise FetchError("content_range_mismatch", status=206)
            self._audit.info("stream.resumed", offset=start, status=206)
            return int(match.group(3))
        if start:
            # 200 to a resume: the server ignored Range and sends the whole
            # piece again. Truncate, never append.
            await part.restart_batch()
            self._audit.info("stream.resumed", offset=0, status=200, range_ignored=True)
        length = resp.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else None


def _refuse_encoding(resp: aiohttp.ClientResponse) -> None:
    """We ask for identity; anything else would make Range offsets, digests and
    sizes refer to other bytes (the session never inflates: a bomb stays small)."""
    coding = content_coding(resp)
    if coding is not None:
        raise VerificationError("content_encoding_refused", coding, status=resp.status)
