"""One job, start to finish: resolve, fetch each piece, verify, publish.

The only place a job changes state in the journal. Cancellation (SIGTERM)
saves a checkpoint and hands the job back under ``asyncio.shield``, so a
stopping daemon never loses more than the bytes since the last fsync. A
journal that cannot record, a full disk, or an object store that cannot take
the verified file now is an outage of ours: the job is handed back
(``JobInterrupted``) with its checkpoint, never failed or announced.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from cxstream.audit import AuditLog
from cxstream.config import Config
from cxstream.fetcher.budget import AttemptBudget, GiveUp
from cxstream.fetcher.errors import (
    Backoff,
    CodecUnavailable,
    DiskFull,
    FetchError,
    PermanentError,
    SegmentLimit,
    Stalled,
    VerificationError,
)
from cxstream.fetcher.publish import Publisher, Verified
from cxstream.fetcher.source import Media, Piece, Source, Target
from cxstream.fetcher.stream import PieceState, PieceStreamer, StreamSettings
from cxstream.fetcher.watchdog import Watchdog
from cxstream.formats import FormatError
from cxstream.formats.check import check_file
from cxstream.journal import Checkpoint, Job, JobRequest, Journal, JournalError
from cxstream.metrics import Metrics
from cxstream.sink.part import ContainerError, PartFile, SourceMismatch
from cxstream.sink.record import final_path
from cxstream.sink.safe_fs import UnsafePath
from cxstream.sink.store import StoreOutage, StoreRefused

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
log = logging.getLogger(__name__)
T = TypeVar("T")


class JobFailed(Exception):
    """The job is dead-lettered: its budget is spent or the error is permanent."""

    def __init__(self, error: FetchError, attempts: int) -> None:
        super().__init__(error.text)
        self.error = error
        self.attempts = attempts


class JobInterrupted(Exception):
    """Not the recording's fault (journal down, disk full, store down): hand the job back.

    ``__cause__`` says which: a ``JournalError``, ``DiskFull`` or ``StoreOutage``."""


class JobRunner:
    """Runs jobs; one ``JobRun`` per job holds that job's state."""

    def __init__(
        self,
        *,
        config: Config,
        source: Source,
        journal: Journal,
        audit: AuditLog,
        metrics: Metrics,
        publisher: Publisher,
        on_completed: Callable[[], None] | None = None,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self.cfg = config
        self.source = source
        self.journal = journal
        self.audit = audit
        self.metrics = metrics
        self.publisher = publisher
        self.on_completed = on_completed
        self.on_enqueued = on_enqueued
        s = config.streams
        self.backoff = Backoff(s.backoff_base_s, s.backoff_cap_s)
        self.settings = StreamSettings(s.idle_timeout_s, s.chunk_bytes, s.checkpoint_bytes)

    async def run(self, job: Job) -> None:
        await JobRun(self, job).run()


class JobRun:
    def __init__(self, runner: JobRunner, job: Job) -> None:
        self.runner = runner
        self.job = job
        self.log = runner.audit.bind(recording_id=job.recording_id)
        self.budget = AttemptBudget(
            max_attempts=runner.cfg.streams.max_attempts,
            backoff=runner.backoff,
            throttle_budget_s=runner.cfg.streams.throttle_budget_s,
            not_ready_grace_s=runner.cfg.source.not_ready_grace_s,
            failures=job.attempts,
        )
        self.streamer = PieceStreamer(
            settings=runner.settings, audit=self.log, metrics=runner.metrics
        )
        self.part: PartFile | None = None
        self.done = 0
        self.in_flight: tuple[int, ...] = ()
        # Until a part file is open, the last run's checkpoint still describes the disk.
        self.previous = job.checkpoint
        self.measured_s: float | None = None  # the duration the file's container gives
        self.started_wall, self.started = time.time(), time.monotonic()
        # The most the part file may hold (quarantine keeps no more evidence than that).
        self.expected_bytes: int | None = None

    # -- the journal's view -------------------------------------------------

    def _checkpoint(self) -> Checkpoint | None:
        part = self.part
        if part is None or not part.is_open:
            return self.previous
        if part.position == part.data_start and not self.done:
            return None
        return Checkpoint(
            codec=part.codec,
            done=self.done,
            batch=self.in_flight,
            batch_start=part.batch_start,
            offset=part.position,
        )

    async def _persist(self, error: str | None = None) -> None:
        """fsync first, then describe: a checkpoint never points past durable bytes."""
        if self.part is not None and self.part.is_open:
            await self.part.sync()
        await self.runner.journal.save_progress(
            self.job.id, self.budget.failures, self._checkpoint(), error
        )

    async def checkpoint(self) -> None:
        await self._persist()

    # -- outcome ------------------------------------------------------------

    async def run(self) -> None:
        metrics = self.runner.metrics
        metrics.active.inc()
        try:
            await self._run()
        except asyncio.CancelledError:
            # If the journal cannot take it now, the next start re-queues the
            # job (it is still "running" there) from its last checkpoint.
            with contextlib.suppress(JournalError):
                await asyncio.shield(self._hand_back())
            raise
        except JobFailed as exc:
            try:
                await asyncio.shield(self._fail(exc))
            except JournalError as err:
                # The failure could not be recorded: the job is still "running"
                # in the journal and is handed back, never silently lost.
                with contextlib.suppress(JournalError):
                    await asyncio.shield(self.runner.journal.release(self.job.id))
                raise JobInterrupted(str(err)) from err
        except (JournalError, DiskFull) as exc:
            with contextlib.suppress(JournalError):
                # After ENOSPC the bytes since the last checkpoint may not be on
                # disk although the part file counted them: the journal's last
                # checkpoint (written after an fsync) stays the truth.
                await asyncio.shield(self._hand_back(persist=not isinstance(exc, DiskFull)))
            raise JobInterrupted(str(exc)) from exc
        except StoreOutage as exc:
            # The sealed part and its checkpoint stay: the next run re-uploads, no more.
            try:
                await asyncio.shield(self._hand_back())
            except JournalError as lost:
                raise JobInterrupted(str(lost)) from lost
            raise JobInterrupted(str(exc)) from exc
        finally:
            metrics.active.dec()
            self.runner.source.forget(self.job)

    async def _hand_back(self, *, persist: bool = True) -> None:
        try:
            if persist:
                await self._persist()
        except (JournalError, OSError):
            pass  # the journal's last checkpoint stays true: it never points past durable bytes
        finally:
            if self.part is not None:
                # On a full disk the flush of what is buffered fails again; the
                # file is closed all the same, and the job must still go back.
                with contextlib.suppress(OSError):
                    await self.part.close()
        await self.runner.journal.release(self.job.id)

    async def _fail(self, exc: JobFailed) -> None:
        err, attempts = exc.error, exc.attempts
        await self.runner.publisher.discard(
            self.job, self.part, err, attempts, self.log, expected=self.expected_bytes
        )
        await self.runner.journal.fail(self.job.id, attempts, err.text)
        self.runner.metrics.recordings.labels(outcome="failed").inc()
        self.log.error("recording.failed", error=err.text, status=err.status, attempts=attempts)

    async def retry(
        self,
        err: FetchError,
        *,
        progressed: bool = False,
        undo: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """The budget decides; this does the rest: undo, persist, audit, wait."""
        self.runner.metrics.retries.labels(reason=err.code).inc()
        decision = self.budget.decide(err, progressed=progressed)
        if isinstance(decision, GiveUp):
            # The failed bytes stay for quarantine: no undo on the last attempt.
            await self._persist(decision.error.text)
            raise JobFailed(decision.error, self.budget.failures)
        if undo is not None:
            await undo()
        await self._persist(err.text)
        extra = {} if decision.wait is None else {decision.wait: True}
        self.log.warning(
            "stream.retry",
            status=err.status,
            error=err.text,
            delay_s=round(decision.delay_s, 3),
            attempt=self.budget.attempts,
            **extra,
        )
        if decision.delay_s:
            await asyncio.sleep(decision.delay_s)

    async def _until_ok(self, call: Callable[[], Awaitable[T]]) -> T:
        """A control call (resolve, media lookup) retried within the budget."""
        while True:
            try:
                # The same idle limit as a stream read: a server that never
                # answers must cost an attempt, not a worker.
                async with Watchdog(self.runner.settings.idle_timeout_s):
                    return await call()
            except PermanentError as err:
                raise JobFailed(err, self.budget.attempts) from None
            except CodecUnavailable:
                raise  # the next format is the answer, not another try
            except FetchError as err:
                await self.retry(err)

    # -- the work -----------------------------------------------------------

    async def _run(self) -> None:
        source = self.runner.source
        targets = await self._until_ok(lambda: source.resolve(self.job))
        mine = [t for t in targets if t.name == self.job.recording_id]
        others = [t for t in targets if t.name != self.job.recording_id]
        if others:
            await self._fan_out(others)
        if not mine:
            # A contact whose recordings each became a job of their own.
            result = {"recordingId": self.job.recording_id, "expanded": [t.name for t in others]}
            await asyncio.shield(
                self.runner.journal.complete(self.job.id, self.budget.attempts, result, None)
            )
            self.log.info("recording.expanded", jobs=[t.name for t in others])
            return
        await self._target(mine[0])

    async def _fan_out(self, targets: list[Target]) -> None:
        job = self.job
        for target in targets:
            request = JobRequest(
                webhook_id=None,
                recording_id=target.name,
                contact_id=job.contact_id,
                codec=None,
                offsets=None,
                day=job.day,
                scope="recording",
                source_ref=target.ref,
            )
            outcome = await self.runner.journal.enqueue(request)
            self.log.info("job.enqueued", job=target.name, ref=target.ref, outcome=outcome.value)
        if self.runner.on_enqueued is not None:
            self.runner.on_enqueued()

    async def _target(self, target: Target) -> None:
        for i, fmt in enumerate(target.formats):
            try:
                lookup = functools.partial(self.runner.source.media, self.job, target, fmt)
                media = await self._until_ok(lookup)
                await self._fetch(target, media)
                return
            except CodecUnavailable as err:
                following = target.formats[i + 1] if i + 1 < len(target.formats) else None
                self.log.warning(
                    "recording.codec_fallback",
                    codec=fmt,
                    next_codec=following,
                    status=err.status,
                    error=err.text,
                )
                if self.part is not None:
                    await self.part.discard()
                    self.part = None
        raise JobFailed(PermanentError("codec_unavailable", status=406), self.budget.attempts)

    async def _open_part(self, final: Path, media: Media) -> None:
        """The part file, resumed from the checkpoint when it can be."""
        cp = self.job.checkpoint
        part = PartFile(
            final, media.fmt, self.runner.publisher.root, expect_sha256=media.expect.sha256
        )
        try:
            resumed = False
            if cp is not None and cp.codec == media.fmt.name:
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
            self.done, self.in_flight = cp.done, cp.batch
        else:
            self.done, self.in_flight = 0, ()
        self.part, self.previous = part, None
        self.log.info(
            "recording.started",
            codec=media.fmt.name,
            segments=media.units,
            resumed_bytes=part.source_bytes,
            attempt=self.budget.attempts,
        )

    async def _fetch(self, target: Target, media: Media) -> None:
        final = final_path(
            self.runner.publisher.root, self.job.day, self.job.recording_id, media.fmt.name
        )
        bound = media.max_bytes
        self.expected_bytes = None if bound is None else bound + media.fmt.header_bytes
        try:
            await self._open_part(final, media)
            part = self.part
            assert part is not None
            while True:
                await self._pieces(media, part)
                sha = await self._seal(media, part)
                if sha is not None:
                    break
            verified = Verified(part=part, sha256=sha, media=media, target=target)
            await self.runner.publisher.publish(self, verified)
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise DiskFull(str(exc.filename or final.parent)) from None
            raise
        except UnsafePath as exc:
            # A link or a foreign file where we write: nothing was followed, no retry can help.
            unsafe = PermanentError("unsafe_path", str(exc))
            raise JobFailed(unsafe, self.budget.attempts) from None
        except StoreRefused as exc:
            refused = PermanentError(exc.code, exc.detail, status=exc.status)
            raise JobFailed(refused, self.budget.attempts) from None

    async def _pieces(self, media: Media, part: PartFile) -> None:
        while self.done < media.units:
            piece = media.piece(self.done)
            if self.in_flight and piece.key != self.in_flight:
                await part.restart_batch()
            elif not self.in_flight:
                await part.begin_batch()
            self.in_flight = piece.key
            try:
                await self._piece(media, piece, part)
            except SegmentLimit as err:
                # A server may lower its limit: adopt it and re-plan what is left.
                if not media.narrow(err.max_segments, piece):
                    raise JobFailed(
                        PermanentError(err.code, status=err.status), self.budget.attempts
                    ) from None
                await self.retry(err, progressed=True, undo=part.restart_batch)
                self.in_flight = ()
                continue
            self.done += piece.units
            self.in_flight = ()
            await part.begin_batch()
            # By bytes, not by batch: each checkpoint is an fsync and a journal
            # write; a crash costs at most checkpoint_bytes of refetching.
            if part.unsynced_bytes >= self.runner.settings.checkpoint_bytes:
                await self.checkpoint()

    async def _piece(self, media: Media, piece: Piece, part: PartFile) -> None:
        """The persistent GET loop of one piece: resume, restart or give up."""
        state = PieceState()

        async def restart() -> None:
            state.forget()
            await part.restart_batch()

        while True:
            try:
                await self.streamer.attempt(
                    media,
                    piece,
                    part,
                    state,
                    attempt=self.budget.attempts,
                    checkpoint=self.checkpoint,
                )
                return
            except (PermanentError, SegmentLimit, CodecUnavailable) as err:
                if isinstance(err, PermanentError):
                    raise JobFailed(err, self.budget.attempts) from None
                raise
            except Stalled as err:
                self.runner.metrics.stalls.inc()
                self.log.warning(
                    "stream.stalled",
                    offsets=piece.label,
                    offset=part.batch_bytes,
                    idle_s=self.runner.settings.idle_timeout_s,
                )
                await self.retry(err, progressed=state.progressed(part))
            except VerificationError as err:
                await self.retry(err, undo=restart)
            except FetchError as err:
                await self.retry(err, progressed=state.progressed(part))

    async def _seal(self, media: Media, part: PartFile) -> str | None:
        """The file's sha256 once the whole verifies; None after starting over."""
        try:
            _check_size(part, media)
            sha = await part.seal()
            if media.expect.sha256 is None:
                # No checksum from the platform: the container and the
                # duration are what is left to hold the file to.
                self.measured_s = await _check_container(part, media)
            return sha
        except SourceMismatch:
            # Read back, the source is not what the platform's sha256 says: every
            # response matched its own digest, yet the whole does not (or the disk
            # changed it; reading back once, the two look alike). Start over.
            err: VerificationError = VerificationError("sha256_mismatch")
        except ContainerError as exc:
            # The disk does not hold what was verified: write it again.
            err = VerificationError("disk_mismatch", str(exc))
        except VerificationError as exc:
            # Every response matched its own digest yet the whole does not
            # match the platform's facts: no piece can be blamed, start over.
            err = exc

        async def start_over() -> None:
            await part.discard()
            await part.create()
            self.done, self.in_flight = 0, ()

        await self.retry(err, undo=start_over)
        return None


async def _check_container(part: PartFile, media: Media) -> float:
    """The file's duration, as its container tells it; VerificationError if it is not one."""
    try:
        info = await check_file(part.path, media.fmt.container)
    except FormatError as exc:
        raise VerificationError("container_invalid", str(exc)) from None
    expected = media.expect.duration_s
    # Encoders pad (AAC adds ~0.1 s); a different recording is off by far more.
    if expected is not None and abs(info.duration_s - expected) > max(1.0, expected * 0.02):
        raise VerificationError(
            "duration_mismatch", f"{info.duration_s:.2f}s, expected {expected:.2f}s"
        )
    return info.duration_s


def _check_size(part: PartFile, media: Media) -> None:
    """The whole's size, before sealing; its sha256 is checked on the bytes read back."""
    expect = media.expect
    if expect.size is not None and part.source_bytes != expect.size:
        raise VerificationError("size_mismatch", f"{part.source_bytes} of {expect.size}")
