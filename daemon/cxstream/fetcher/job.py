"""One job, start to finish: metadata, codec, plan, batches, verification, publication.

The only place a job changes state in the journal. Cancellation (SIGTERM)
saves a checkpoint and hands the job back under ``asyncio.shield``, so a
stopping daemon never loses more than the bytes since the last fsync.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from cxstream.audit import AuditLog
from cxstream.config import Config
from cxstream.fetcher.cxone import CodecInfo, CxoneClient, RecordingMeta
from cxstream.fetcher.errors import (
    Backoff,
    CodecUnavailable,
    FetchError,
    IntegrityError,
    PermanentError,
    SegmentLimit,
)
from cxstream.fetcher.stream import BatchStreamer, StreamSettings
from cxstream.fetcher.tries import GiveUp, Tries
from cxstream.fetcher.watchdog import Watchdog
from cxstream.journal import Checkpoint, Job, Journal
from cxstream.metrics import Metrics
from cxstream.planner import PlanError, Segment, plan, select
from cxstream.sink.part import PartFile, write_atomic
from cxstream.sink.quarantine import quarantine
from cxstream.sink.record import EXTENSIONS, Archived


class _Progress:
    """Where the job stands, for the checkpoint a cancellation or a timer writes."""

    def __init__(self, previous: Checkpoint | None) -> None:
        self.part: PartFile | None = None
        self.done = 0
        self.batch: tuple[int, ...] = ()
        # Until a part file is open, the last run's checkpoint still describes the disk.
        self.previous = previous

    def checkpoint(self) -> Checkpoint | None:
        if self.part is None or not self.part.is_open:
            return self.previous
        if self.part.position == self.part.data_start and not self.done:
            return None
        return Checkpoint(
            codec=self.part.codec,
            done=self.done,
            batch=self.batch,
            batch_start=self.part.batch_start,
            offset=self.part.position,
        )


class JobRunner:
    def __init__(
        self,
        *,
        config: Config,
        client: CxoneClient,
        journal: Journal,
        audit: AuditLog,
        metrics: Metrics,
        on_completed: Any = None,
    ) -> None:
        self._cfg = config
        self._client = client
        self._journal = journal
        self._audit = audit
        self._metrics = metrics
        self._on_completed = on_completed
        self._backoff = Backoff(config.streams.backoff_base_s, config.streams.backoff_cap_s)
        s = config.streams
        self._settings = StreamSettings(s.idle_timeout_s, s.chunk_bytes, s.checkpoint_bytes)

    async def run(self, job: Job) -> None:
        log = self._audit.bind(recording_id=job.recording_id)
        progress = _Progress(job.checkpoint)

        async def persist(failures: int, error: str) -> None:
            await self._journal.save_progress(job.id, failures, await _sync(progress), error)

        tries = Tries(
            failures=job.attempts,
            max_attempts=self._cfg.streams.max_attempts,
            backoff=self._backoff,
            audit=log,
            metrics=self._metrics,
            persist=persist,
        )
        started_wall, started = time.time(), time.monotonic()
        self._metrics.active.inc()
        try:
            archived = await self._fetch(job, log, tries, progress, started_wall, started)
        except asyncio.CancelledError:
            await asyncio.shield(self._hand_back(job, tries, progress))
            raise
        except GiveUp as exc:
            # The budget is spent: every counted failure was one attempt.
            await asyncio.shield(self._fail(job, tries.failures, progress, exc.last, log))
            return
        except PermanentError as exc:
            # The permanent error was itself the last attempt.
            await asyncio.shield(self._fail(job, tries.attempts, progress, exc, log))
            return
        finally:
            self._metrics.active.dec()
        self._metrics.recordings.labels(outcome="completed").inc()
        self._metrics.duration.observe(archived.duration_ms / 1000)
        log.info(
            "recording.completed",
            bytes=archived.bytes,
            sha256=archived.sha256,
            ttfb_ms=None if archived.ttfb_ms is None else round(archived.ttfb_ms, 1),
            duration_ms=round(archived.duration_ms, 1),
            attempts=archived.attempts,
            path=str(archived.path),
            codec=archived.codec,
        )
        if self._on_completed is not None:
            self._on_completed()

    async def _hand_back(self, job: Job, tries: Tries, progress: _Progress) -> None:
        cp = await _sync(progress)
        await self._journal.save_progress(job.id, tries.failures, cp, None)
        await self._journal.release(job.id)
        if progress.part is not None:
            await progress.part.close()

    async def _fail(
        self, job: Job, attempts: int, progress: _Progress, err: FetchError, log: AuditLog
    ) -> None:
        part = progress.part
        if part is not None and isinstance(err, IntegrityError) and part.source_bytes:
            path = await quarantine(
                part, self._cfg.storage.state_dir, job.recording_id, err.code, attempts
            )
            log.warning(
                "recording.quarantined", reason=err.code, path=str(path), bytes=part.position
            )
        elif part is not None:
            await part.discard()
        await self._journal.fail(job.id, attempts, err.code)
        self._metrics.recordings.labels(outcome="failed").inc()
        log.error("recording.failed", error=err.code, status=err.status, attempts=attempts)

    async def _fetch(
        self,
        job: Job,
        log: AuditLog,
        tries: Tries,
        progress: _Progress,
        started_wall: float,
        started: float,
    ) -> Archived:
        while True:
            try:
                # The metadata GET gets the same idle limit as a stream read:
                # a server that never answers must cost an attempt, not a worker.
                async with Watchdog(self._settings.idle_timeout_s):
                    meta = await self._client.metadata(job.recording_id)
                break
            except FetchError as err:
                if isinstance(err, PermanentError):
                    raise
                await tries.failed(err)
        try:
            wanted = select(meta.segments, job.offsets)
        except PlanError as exc:
            raise PermanentError(f"plan_impossible: {exc}") from None
        prefs = [job.codec] if job.codec else []
        codecs = [c for c in dict.fromkeys([*prefs, *self._cfg.cxone.codecs]) if c in meta.codecs]
        if not codecs:
            raise PermanentError("codec_unavailable")
        for i, codec in enumerate(codecs):
            try:
                return await self._fetch_codec(
                    job, meta, wanted, codec, log, tries, progress, started_wall, started
                )
            except CodecUnavailable as err:
                log.warning(
                    "recording.codec_fallback",
                    codec=codec,
                    next_codec=codecs[i + 1] if i + 1 < len(codecs) else None,
                    status=err.status,
                    error=err.code,
                )
                if progress.part is not None:
                    await progress.part.discard()
                    progress.part = None
        raise PermanentError("codec_unavailable", status=406)

    async def _fetch_codec(
        self,
        job: Job,
        meta: RecordingMeta,
        wanted: tuple[Segment, ...],
        codec: str,
        log: AuditLog,
        tries: Tries,
        progress: _Progress,
        started_wall: float,
        started: float,
    ) -> Archived:
        final = self._cfg.storage.dir / job.day / f"{job.recording_id}.{EXTENSIONS[codec]}"
        part = progress.part = PartFile(final, codec)
        cp = job.checkpoint if job.checkpoint and job.checkpoint.codec == codec else None
        resumed = cp is not None and await part.resume(cp.batch_start, cp.offset)
        if resumed:
            assert cp is not None
            progress.done, in_flight = cp.done, cp.batch
        else:
            await part.create()
            progress.done, in_flight = 0, ()
        progress.previous = None
        log.info(
            "recording.started",
            codec=codec,
            segments=len(wanted),
            resumed_bytes=part.source_bytes if resumed else 0,
            attempt=tries.attempts,
        )

        async def checkpoint() -> None:
            await self._journal.save_progress(job.id, tries.failures, await _sync(progress), None)

        streamer = BatchStreamer(
            client=self._client,
            settings=self._settings,
            audit=log,
            metrics=self._metrics,
            tries=tries,
            checkpoint=checkpoint,
        )
        max_segments = meta.max_segments
        whole = job.offsets is None or len(wanted) == len(meta.segments)
        while True:
            while progress.done < len(wanted):
                try:
                    batch = plan(wanted[progress.done :], max_segments, meta.max_duration)[0]
                except PlanError as exc:
                    raise PermanentError(f"plan_impossible: {exc}") from None
                if in_flight and batch.offsets != in_flight:
                    await part.restart_batch()
                elif not in_flight:
                    part.begin_batch()
                in_flight = ()
                progress.batch = batch.offsets
                try:
                    await streamer.fetch(job.recording_id, codec, batch, meta.max_duration, part)
                except SegmentLimit as err:
                    if len(batch.segments) == 1:
                        raise PermanentError(err.code, status=err.status) from None
                    lowered = err.max_segments or len(batch.segments) - 1
                    max_segments = max(1, min(lowered, len(batch.segments) - 1))
                    await part.restart_batch()
                    await tries.failed(err, immediate=True)
                    continue
                progress.done += len(batch.segments)
                progress.batch = ()
                part.begin_batch()
                await checkpoint()
            info = meta.codecs[codec]
            try:
                if whole:
                    _check_whole(part, info)
                break
            except IntegrityError as err:
                # Every response matched its own digest yet the whole does not
                # match the metadata: no batch can be blamed, so start over.
                async def start_over(part: PartFile = part) -> None:
                    await part.discard()
                    await part.create()
                    progress.done = 0

                await tries.failed(err, undo=start_over)
        sha = await part.seal()
        size = part.position
        await part.publish()
        progress.part = None
        completed_wall = time.time()
        archived = Archived(
            recording_id=job.recording_id,
            contact_id=job.contact_id,
            codec=codec,
            path=final,
            bytes=size,
            sha256=sha,
            source_sha256=part.source_sha256(),
            segments=wanted,
            attempts=tries.attempts,
            ttfb_ms=streamer.ttfb_ms,
            duration_ms=(time.monotonic() - started) * 1000,
            started_at=started_wall,
            completed_at=completed_wall,
        )
        sidecar = final.with_suffix(".json")
        await write_atomic(sidecar, orjson.dumps(archived.sidecar(), option=orjson.OPT_INDENT_2))
        announcement = archived.announcement() if self._cfg.archive.url else None
        await asyncio.shield(
            self._journal.complete(job.id, tries.attempts, archived.sidecar(), announcement)
        )
        return archived


def _check_whole(part: PartFile, info: CodecInfo) -> None:
    if part.source_bytes != info.bytes:
        raise IntegrityError(f"size_mismatch: {part.source_bytes} of {info.bytes}")
    if part.source_sha256() != info.sha256:
        raise IntegrityError("sha256_mismatch")


async def _sync(progress: _Progress) -> Checkpoint | None:
    """fsync first, then describe: a checkpoint never points past durable bytes."""
    part = progress.part
    if part is not None and part.is_open:
        await part.sync()
    return progress.checkpoint()
