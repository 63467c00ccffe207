"""A bounded pool of persistent loops, each taking the next job from the journal.

Workers sleep on an event the webhook sets after a commit (and poll slowly
as a safety net), so a job starts within milliseconds of its 202. They take
no job while the disk guard is closed, nor while the store is known to be
down (``Store.ready``). Stopping cancels the loops; each job's own
cancellation path writes its checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cxstream.audit import AuditLog
from cxstream.fetcher.errors import DiskFull
from cxstream.fetcher.job import JobInterrupted, JobRunner
from cxstream.journal import Job, Journal, JournalError
from cxstream.metrics import Metrics
from cxstream.sink.space import DiskGuard
from cxstream.sink.store import Store, StoreOutage

_POLL_S = 1.0
log = logging.getLogger(__name__)


class WorkerPool:
    def __init__(
        self,
        *,
        journal: Journal,
        runner: JobRunner,
        size: int,
        audit: AuditLog,
        metrics: Metrics,
        guard: DiskGuard,
        store: Store,
    ) -> None:
        self._journal = journal
        self._store = store
        self._audit = audit
        self._metrics = metrics
        self._runner = runner
        self._guard = guard
        self._size = size
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(), name=f"cxstream-worker-{i}")
            for i in range(self._size)
        ]

    async def stop(self, timeout_s: float) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=timeout_s)
        self._tasks = []

    async def _idle(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_POLL_S):
                await self._wake.wait()

    async def _loop(self) -> None:
        while True:
            if not await self._guard.check() or not await self._store.ready():
                await self._idle()
                continue
            try:
                job = await self._journal.claim()
            except JournalError as exc:
                log.error("journal unavailable, workers waiting: %s", exc)
                job = None
            if job is None:
                await self._idle()
                continue
            # Another idle worker may take the next job while this one streams.
            self._wake.set()
            await self._run(job)

    async def _release(self, job: Job) -> None:
        """Hand a job back once the journal answers again (it may still say "running")."""
        while True:
            await asyncio.sleep(_POLL_S)
            try:
                await self._journal.release(job.id)
                return
            except JournalError:
                continue

    async def _run(self, job: Job) -> None:
        try:
            await self._runner.run(job)
        except JobInterrupted as exc:
            cause = exc.__cause__
            reason = "journal"
            if isinstance(cause, DiskFull):
                reason = "disk_full"
                self._guard.disk_full(cause.path)
            elif isinstance(cause, StoreOutage):
                reason = "store"  # the store paused itself: no job until it answers again
            self._metrics.interrupted.labels(reason=reason).inc()
            self._audit.warning(
                "recording.interrupted", recording_id=job.recording_id, reason=reason
            )
            if reason == "journal":
                await self._release(job)
        except Exception as exc:
            # A bug must not kill the loop, nor spin on a poison job: the job
            # is dead-lettered, visibly; the traceback goes to stderr.
            log.exception("job %s crashed", job.recording_id)
            error = f"internal_error: {exc.__class__.__name__}"
            with contextlib.suppress(JournalError):
                await self._journal.fail(job.id, job.attempts + 1, error)
            self._audit.error(
                "recording.failed",
                recording_id=job.recording_id,
                error=error,
                status=None,
                attempts=job.attempts + 1,
            )
