"""One batch, streamed to the part file until every byte of it is in and verified.

This is the persistent GET loop: a stall, a cut connection or broken chunked
framing resumes the same request with ``Range`` from the last byte on disk; a
server that ignores ``Range`` or sends bytes that fail their ``Repr-Digest``
sends the batch back to its first byte. Errors it cannot fix by retrying the
same request (404, 406, 413, ...) go up to the job.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from cxstream.audit import AuditLog
from cxstream.fetcher.cxone import CxoneClient
from cxstream.fetcher.errors import FetchError, IntegrityError, RangeNotSatisfiable, Stalled
from cxstream.fetcher.tries import Tries
from cxstream.fetcher.watchdog import Watchdog
from cxstream.metrics import Metrics
from cxstream.planner import Batch
from cxstream.sink.digest import DigestHeaderError, parse_repr_digest
from cxstream.sink.part import ContainerError, PartFile

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@dataclass(frozen=True, slots=True)
class StreamSettings:
    idle_timeout_s: float
    chunk_bytes: int
    checkpoint_bytes: int


class BatchStreamer:
    def __init__(
        self,
        *,
        client: CxoneClient,
        settings: StreamSettings,
        audit: AuditLog,
        metrics: Metrics,
        tries: Tries,
        checkpoint: Callable[[], Awaitable[None]],
    ) -> None:
        self._client = client
        self._settings = settings
        self._audit = audit
        self._metrics = metrics
        self._tries = tries
        self._checkpoint = checkpoint
        self.ttfb_ms: float | None = None
        self._forget()

    async def fetch(
        self,
        recording_id: str,
        codec: str,
        batch: Batch,
        max_duration: int,
        part: PartFile,
        *,
        need_digest: bool,
    ) -> None:
        """Until the batch is on disk and verified. ``need_digest``: no other check
        covers this batch (a subset of the recording), so a missing digest fails it."""
        self._forget()

        async def restart() -> None:
            self._forget()
            await part.restart_batch()

        # A stall or cut right after progress resumes at once; one that got
        # nothing since the last failure backs off like any other error.
        progress_at_failure = -1

        def progressed() -> bool:
            nonlocal progress_at_failure
            moved = part.position > progress_at_failure
            progress_at_failure = part.position
            return moved

        while True:
            try:
                if self._total is None or part.batch_bytes != self._total:
                    await self._response(recording_id, codec, batch, max_duration, part)
                # else: every byte arrived before the stall or cut; only the
                # end-of-body marker was missing. Nothing left to ask for.
                self._finish(part, need_digest)
                return
            except Stalled as err:
                self._metrics.stalls.inc()
                self._audit.warning(
                    "stream.stalled",
                    offsets=batch.offsets_param,
                    offset=part.batch_bytes,
                    idle_s=self._settings.idle_timeout_s,
                )
                await self._tries.failed(err, immediate=progressed())
            except (aiohttp.ClientError, ConnectionError) as exc:
                # Cut connections, broken chunked framing, an unparseable
                # response head: the bytes on disk are good, resume after them.
                err = FetchError(f"connection_lost: {exc.__class__.__name__}")
                await self._tries.failed(err, immediate=progressed())
            except IntegrityError as err:
                await self._tries.failed(err, undo=restart)
            except ContainerError as exc:
                err = IntegrityError(f"container_invalid: {exc}")
                await self._tries.failed(err, undo=restart)
            except DigestHeaderError as exc:
                err = IntegrityError(f"repr_digest_malformed: {exc}")
                await self._tries.failed(err, undo=restart)
            except RangeNotSatisfiable as err:
                if not part.batch_bytes:
                    raise
                if err.length == part.batch_bytes:
                    self._total = err.length  # all here: finish on the next turn
                    continue
                # Our idea of the batch and the server's disagree: start it over.
                await self._tries.failed(IntegrityError(err.code, status=416), undo=restart)
            except FetchError as err:
                if err.__class__ is not FetchError:
                    raise  # permanent, codec or segment-limit: the job decides
                await self._tries.failed(err)

    def _forget(self) -> None:
        """What the responses of this batch said of it: its size and its digest."""
        self._total: int | None = None
        self._expected: bytes | None = None

    def _finish(self, part: PartFile, need_digest: bool) -> None:
        if self._total is not None and part.batch_bytes != self._total:
            raise IntegrityError(f"body_length_mismatch: {part.batch_bytes} of {self._total}")
        if self._expected is None:
            if need_digest:
                raise IntegrityError("repr_digest_missing")
        elif part.batch_digest() != self._expected:
            raise IntegrityError("repr_digest_mismatch")
        part.end_batch()

    async def _response(
        self, recording_id: str, codec: str, batch: Batch, max_duration: int, part: PartFile
    ) -> None:
        settings = self._settings
        start = part.batch_bytes
        self._audit.info(
            "stream.request",
            offsets=batch.offsets_param,
            codec=codec,
            range_start=start,
            attempt=self._tries.attempts,
        )
        sent = time.monotonic()
        async with (
            Watchdog(settings.idle_timeout_s) as dog,
            self._client.stream(recording_id, codec, batch, max_duration, start) as resp,
        ):
            # The watchdog times the network only: our own disk and journal
            # work happens with it paused, so a slow fsync is never a "stall".
            dog.pause()
            self._metrics.requests.labels(status=str(resp.status)).inc()
            expected = parse_repr_digest(resp.headers.get("Repr-Digest"))
            total = await self._position(resp, part, start)
            self._total = total
            if expected is not None or start == 0:
                self._expected = expected
            since_checkpoint = 0
            while True:
                dog.ping()
                chunk = await resp.content.read(settings.chunk_bytes)
                dog.pause()
                if not chunk:
                    break
                if self.ttfb_ms is None:
                    self.ttfb_ms = (time.monotonic() - sent) * 1000
                    self._metrics.ttfb.observe(self.ttfb_ms / 1000)
                await part.write(chunk)
                self._metrics.bytes.inc(len(chunk))
                since_checkpoint += len(chunk)
                if since_checkpoint >= settings.checkpoint_bytes:
                    await self._checkpoint()
                    since_checkpoint = 0

    async def _position(
        self, resp: aiohttp.ClientResponse, part: PartFile, start: int
    ) -> int | None:
        """Line the part file up with where this response's body starts; the batch's size."""
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
            # batch again. Truncate, never append.
            await part.restart_batch()
            self._audit.info("stream.resumed", offset=0, status=200, range_ignored=True)
        length = resp.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else None
