"""One job, start to finish: metadata, codec, plan, batches, verification, publication.

The only place a job changes state in the journal. Cancellation (SIGTERM)
saves a checkpoint and hands the job back under ``asyncio.shield``, so a
stopping daemon never loses more than the bytes since the last fsync.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

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
from cxstream.sink.part import ContainerError, PartFile
from cxstream.sink.publish import write_sidecar
from cxstream.sink.quarantine import Quarantine
from cxstream.sink.record import Archived, final_path
from cxstream.sink.safe_fs import UnsafePath


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
    """Runs jobs; one ``_Run`` per job holds that job's state."""

    def __init__(
        self,
        *,
        config: Config,
        client: CxoneClient,
        journal: Journal,
        audit: AuditLog,
        metrics: Metrics,
        on_completed: Callable[[], None] | None = None,
    ) -> None:
        self.cfg = config
        self.client = client
        self.journal = journal
        self.audit = audit
        self.metrics = metrics
        self.on_completed = on_completed
        self.backoff = Backoff(config.streams.backoff_base_s, config.streams.backoff_cap_s)
        s = config.streams
        self.settings = StreamSettings(s.idle_timeout_s, s.chunk_bytes, s.checkpoint_bytes)
        self.quarantine = Quarantine(config.storage)

    async def run(self, job: Job) -> None:
        await _Run(self, job).run()


class _Run:
    def __init__(self, runner: JobRunner, job: Job) -> None:
        self.r = runner
        self.job = job
        self.log = runner.audit.bind(recording_id=job.recording_id)
        self.progress = _Progress(job.checkpoint)
        self.tries = Tries(
            failures=job.attempts,
            max_attempts=runner.cfg.streams.max_attempts,
            backoff=runner.backoff,
            audit=self.log,
            metrics=runner.metrics,
            persist=self._persist,
            throttle_budget_s=runner.cfg.streams.throttle_budget_s,
        )
        self.started_wall, self.started = time.time(), time.monotonic()
        # What the part file should hold when complete, when the metadata says (quarantine's bound).
        self.expected_bytes: int | None = None

    async def _persist(self, failures: int, error: str | None) -> None:
        cp = await _sync(self.progress)
        await self.r.journal.save_progress(self.job.id, failures, cp, error)

    async def checkpoint(self) -> None:
        await self._persist(self.tries.failures, None)

    async def run(self) -> None:
        metrics = self.r.metrics
        metrics.active.inc()
        try:
            archived = await self._fetch()
        except asyncio.CancelledError:
            await asyncio.shield(self._hand_back())
            raise
        except GiveUp as exc:
            # The budget is spent: every counted failure was one attempt.
            await asyncio.shield(self._fail(self.tries.failures, exc.last))
            return
        except PermanentError as exc:
            # The permanent error was itself the last attempt.
            await asyncio.shield(self._fail(self.tries.attempts, exc))
            return
        except UnsafePath as exc:
            # A link or a foreign file where we write: nothing was followed, no retry can help.
            unsafe = PermanentError(f"unsafe_path: {exc}")
            await asyncio.shield(self._fail(self.tries.attempts, unsafe))
            return
        except Exception as exc:
            # A bug or the disk (ENOSPC): dead-letter the job visibly, keep the
            # worker. The traceback goes to stderr, never to the audit trail.
            logging.getLogger(__name__).exception("job %s crashed", self.job.recording_id)
            error = FetchError(f"internal_error: {exc.__class__.__name__}")
            await asyncio.shield(self._fail(self.tries.attempts, error))
            return
        finally:
            metrics.active.dec()
        metrics.recordings.labels(outcome="completed").inc()
        metrics.duration.observe(archived.duration_ms / 1000)
        self.log.info(
            "recording.completed",
            bytes=archived.bytes,
            sha256=archived.sha256,
            ttfb_ms=None if archived.ttfb_ms is None else round(archived.ttfb_ms, 1),
            duration_ms=round(archived.duration_ms, 1),
            attempts=archived.attempts,
            path=str(archived.path),
            codec=archived.codec,
        )
        if self.r.on_completed is not None:
            self.r.on_completed()

    async def _hand_back(self) -> None:
        await self.checkpoint()
        await self.r.journal.release(self.job.id)
        if self.progress.part is not None:
            await self.progress.part.close()

    async def _fail(self, attempts: int, err: FetchError) -> None:
        part, job = self.progress.part, self.job
        if part is not None and isinstance(err, IntegrityError) and part.source_bytes:
            kept = await self.r.quarantine.keep(
                part, job.recording_id, err.code, attempts, self.expected_bytes
            )
            if kept is not None:
                self.log.warning(
                    "recording.quarantined",
                    reason=err.code,
                    path=str(kept.path),
                    bytes=kept.bytes,
                    bytes_dropped=kept.bytes_dropped,
                    evicted=kept.evicted,
                )
        elif part is not None:
            await part.discard()
        elif job.checkpoint is not None:
            # This run never reopened the earlier run's part file: remove it.
            codec = job.checkpoint.codec
            final = final_path(self.r.cfg.storage.dir, job.day, job.recording_id, codec)
            orphan = PartFile(final, codec, self.r.cfg.storage.dir)
            await orphan.discard()
        await self.r.journal.fail(job.id, attempts, err.code)
        self.r.metrics.recordings.labels(outcome="failed").inc()
        self.log.error("recording.failed", error=err.code, status=err.status, attempts=attempts)

    async def _metadata(self) -> RecordingMeta:
        while True:
            try:
                # The metadata GET gets the same idle limit as a stream read:
                # a server that never answers must cost an attempt, not a worker.
                async with Watchdog(self.r.settings.idle_timeout_s):
                    return await self.r.client.metadata(self.job.recording_id)
            except FetchError as err:
                if isinstance(err, PermanentError):
                    raise
                await self.tries.failed(err)

    async def _fetch(self) -> Archived:
        meta = await self._metadata()
        try:
            wanted = select(meta.segments, self.job.offsets)
        except PlanError as exc:
            raise PermanentError(f"plan_impossible: {exc}") from None
        prefs = [self.job.codec] if self.job.codec else []
        if self.job.checkpoint is not None:
            # A previous run got somewhere in this codec: resume it, not start another.
            prefs.insert(0, self.job.checkpoint.codec)
        preference = dict.fromkeys([*prefs, *self.r.cfg.cxone.codecs])
        codecs = [c for c in preference if c in meta.codecs]
        if not codecs:
            raise PermanentError("codec_unavailable")
        for i, codec in enumerate(codecs):
            try:
                return await self._fetch_codec(meta, wanted, codec)
            except CodecUnavailable as err:
                self.log.warning(
                    "recording.codec_fallback",
                    codec=codec,
                    next_codec=codecs[i + 1] if i + 1 < len(codecs) else None,
                    status=err.status,
                    error=err.code,
                )
                if self.progress.part is not None:
                    await self.progress.part.discard()
                    self.progress.part = None
        raise PermanentError("codec_unavailable", status=406)

    async def _open_part(
        self, final: Path, codec: str, segments: int
    ) -> tuple[PartFile, tuple[int, ...]]:
        """The part file, resumed from the checkpoint when it can be; the batch in flight."""
        progress, cp = self.progress, self.job.checkpoint
        part = PartFile(final, codec, self.r.cfg.storage.dir)
        try:
            resumed = False
            if cp is not None and cp.codec == codec:
                resumed = await part.resume(cp.batch_start, cp.offset)
            if not resumed:
                await part.create()
        except BaseException:
            # Until the part is fully open, the journal's checkpoint stays the
            # truth: a stop in here must not record a half-built position.
            await asyncio.shield(part.close())
            raise
        if resumed:
            assert cp is not None
            progress.done, in_flight = cp.done, cp.batch
        else:
            progress.done, in_flight = 0, ()
        progress.part, progress.previous = part, None
        self.log.info(
            "recording.started",
            codec=codec,
            segments=segments,
            resumed_bytes=part.source_bytes,
            attempt=self.tries.attempts,
        )
        return part, in_flight

    async def _fetch_codec(
        self, meta: RecordingMeta, wanted: tuple[Segment, ...], codec: str
    ) -> Archived:
        job, progress, tries = self.job, self.progress, self.tries
        final = final_path(self.r.cfg.storage.dir, job.day, job.recording_id, codec)
        part, in_flight = await self._open_part(final, codec, len(wanted))
        streamer = BatchStreamer(
            client=self.r.client,
            settings=self.r.settings,
            audit=self.log,
            metrics=self.r.metrics,
            tries=tries,
            checkpoint=self.checkpoint,
        )
        max_segments = meta.max_segments
        whole = job.offsets is None or len(wanted) == len(meta.segments)
        self.expected_bytes = meta.codecs[codec].bytes + part.data_start if whole else None
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
                    await streamer.fetch(
                        job.recording_id,
                        codec,
                        batch,
                        meta.max_duration,
                        part,
                        need_digest=not whole,
                    )
                except SegmentLimit as err:
                    # A server may lower its limit: adopt it and re-plan what is left.
                    if len(batch.segments) == 1:
                        raise PermanentError(err.code, status=err.status) from None
                    lowered = err.max_segments or len(batch.segments) - 1
                    max_segments = max(1, min(lowered, len(batch.segments) - 1))
                    await tries.failed(err, immediate=True, undo=part.restart_batch)
                    continue
                progress.done += len(batch.segments)
                progress.batch = ()
                part.begin_batch()
                await self.checkpoint()
            try:
                if whole:
                    _check_whole(part, meta.codecs[codec])
                sha = await part.seal()
                break
            except ContainerError as exc:
                # The disk does not hold what was verified: write it again.
                mismatch = IntegrityError(f"disk_mismatch: {exc}")

                async def rewrite(part: PartFile = part) -> None:
                    await part.discard()
                    await part.create()
                    progress.done = 0

                await tries.failed(mismatch, undo=rewrite)
            except IntegrityError as err:
                # Every response matched its own digest yet the whole does not
                # match the metadata: no batch can be blamed, so start over.
                async def start_over(part: PartFile = part) -> None:
                    await part.discard()
                    await part.create()
                    progress.done = 0

                await tries.failed(err, undo=start_over)
        return await self._publish(part, sha, codec, wanted, streamer.ttfb_ms)

    async def _publish(
        self,
        part: PartFile,
        sha: str,
        codec: str,
        wanted: tuple[Segment, ...],
        ttfb_ms: float | None,
    ) -> Archived:
        size = part.position
        published = await part.publish(sha, self.job.recording_id)
        self.progress.part = None
        if published.conflict is not None:
            # Never a silent overwrite: the name was taken by other bytes, ours went beside.
            self.log.warning(
                "recording.conflict",
                path=str(published.conflict.existing),
                published=str(published.path),
                sha256=sha,
                existing_sha256=published.conflict.existing_sha256,
            )
        archived = Archived(
            recording_id=self.job.recording_id,
            contact_id=self.job.contact_id,
            codec=codec,
            path=published.path,
            bytes=size,
            sha256=sha,
            source_sha256=part.source_sha256(),
            segments=wanted,
            attempts=self.tries.attempts,
            ttfb_ms=ttfb_ms,
            duration_ms=(time.monotonic() - self.started) * 1000,
            started_at=self.started_wall,
            completed_at=time.time(),
        )
        sidecar = orjson.dumps(archived.sidecar(), option=orjson.OPT_INDENT_2)
        await write_sidecar(self.r.cfg.storage.dir, published, sidecar)
        announcement = archived.announcement() if self.r.cfg.archive.url else None
        await asyncio.shield(
            self.r.journal.complete(
                self.job.id, self.tries.attempts, archived.sidecar(), announcement
            )
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
