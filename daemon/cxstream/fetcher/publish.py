"""The end of a job: a verified part file becomes a published recording, or evidence.

Publication is: the file handed to the store (``sink/store.py``: under its
final name in ``storage.dir``, or uploaded to object storage; never over
other content), its sidecar, then — in one journal transaction — the job
completed and its announcement queued. A failed job's bytes go to quarantine
if they are what failed to verify, else they are removed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from cxstream.audit import AuditLog
from cxstream.config import Config
from cxstream.fetcher.errors import FetchError, VerificationError
from cxstream.fetcher.source import Media, Target
from cxstream.formats import registry
from cxstream.journal import Job, Journal
from cxstream.metrics import Metrics
from cxstream.sink.part import PartFile
from cxstream.sink.quarantine import Quarantine
from cxstream.sink.record import Archived, final_path
from cxstream.sink.store import Item, Store

if TYPE_CHECKING:
    from cxstream.fetcher.job import JobRun


@dataclass(frozen=True, slots=True)
class Verified:
    """A sealed part file: every check passed, ``sha256`` is of the bytes on disk."""

    part: PartFile
    sha256: str
    media: Media
    target: Target


class Publisher:
    def __init__(
        self,
        *,
        config: Config,
        journal: Journal,
        metrics: Metrics,
        store: Store,
        on_completed: Callable[[], None] | None = None,
    ) -> None:
        self._cfg = config
        self._store = store
        self._journal = journal
        self._metrics = metrics
        self._on_completed = on_completed
        self._quarantine = Quarantine(config.storage)

    @property
    def root(self) -> Path:
        """Where part files are written: the store's local root."""
        return self._store.local_root

    async def publish(self, run: JobRun, verified: Verified) -> None:
        part, media, job = verified.part, verified.media, run.job
        size = part.position
        container = (media.fmt.check_name,) if media.fmt.check_name else ()
        if media.expect.sha256 is None:
            container = (*container, f"{media.fmt.container}-container")
        described: list[Archived] = []

        def describe(path: str) -> bytes:
            """The sidecar for the place the store chose (a taken name moves it)."""
            archived = Archived(
                recording_id=job.recording_id,
                contact_id=job.contact_id,
                codec=media.fmt.name,
                path=path,
                size=size,
                sha256=verified.sha256,
                source_sha256=part.source_sha256(),
                segments=media.segments,
                duration_s=_duration(media, run.measured_s),
                verified_by=(*media.verified_by, *container, "read-back"),
                # The id as the platform spelled it, when the file name had to differ.
                extra={**verified.target.extra, **_original(job)},
                attempts=run.budget.attempts,
                ttfb_ms=run.streamer.ttfb_ms,
                duration_ms=(time.monotonic() - run.started) * 1000,
                started_at=run.started_wall,
                completed_at=time.time(),
            )
            described.append(archived)
            return orjson.dumps(archived.sidecar(), option=orjson.OPT_INDENT_2)

        item = Item(
            recording_id=job.recording_id,
            day=job.day,
            ext=media.fmt.extension,
            content_type=media.fmt.content_type,
            sha256=verified.sha256,
            size=size,
        )
        try:
            placed = await self._store.publish(part, item, describe)
        finally:
            if not part.is_open:
                # Published (or its name already gone): nothing left for a discard to touch.
                run.part = None
        if placed.conflict is not None:
            # Never a silent overwrite: the name was taken by other bytes, ours went beside.
            run.log.warning(
                "recording.conflict",
                path=placed.conflict.existing,
                published=placed.path,
                sha256=verified.sha256,
                existing_sha256=placed.conflict.existing_sha256,
            )
        archived = described[-1]
        announcement = archived.announcement() if self._cfg.archive.url else None
        await asyncio.shield(
            self._journal.complete(job.id, run.budget.attempts, archived.sidecar(), announcement)
        )
        self._metrics.recordings.labels(outcome="completed").inc()
        self._metrics.duration.observe(archived.duration_ms / 1000)
        run.log.info(
            "recording.completed",
            bytes=archived.size,
            sha256=archived.sha256,
            ttfb_ms=None if archived.ttfb_ms is None else round(archived.ttfb_ms, 1),
            duration_ms=round(archived.duration_ms, 1),
            attempts=archived.attempts,
            path=archived.path,
            codec=archived.codec,
        )
        if self._on_completed is not None:
            self._on_completed()

    async def discard(
        self,
        job: Job,
        part: PartFile | None,
        err: FetchError,
        attempts: int,
        log: AuditLog,
        *,
        expected: int | None = None,
    ) -> None:
        """``expected``: the most the part could legitimately hold, when known."""
        if part is not None and isinstance(err, VerificationError) and part.source_bytes:
            kept = await self._quarantine.keep(part, job.recording_id, err.text, attempts, expected)
            if kept is not None:
                log.warning(
                    "recording.quarantined",
                    reason=err.text,
                    path=str(kept.path),
                    bytes=kept.bytes,
                    bytes_dropped=kept.bytes_dropped,
                    evicted=kept.evicted,
                )
        elif part is not None:
            await part.discard()
        elif job.checkpoint is not None:
            # This run never reopened the earlier run's part file: remove it.
            fmt = registry.get(job.checkpoint.codec)
            final = final_path(self.root, job.day, job.recording_id, fmt.name)
            await PartFile(final, fmt, self.root).discard()


def _duration(media: Media, measured_s: float | None) -> float | int | None:
    """The segments' sum (stream API), else the platform's word, else the container's."""
    if media.segments:
        return sum(s["duration"] for s in media.segments)
    if media.expect.duration_s is not None:
        return media.expect.duration_s
    return None if measured_s is None else round(measured_s, 3)


def _original(job: Job) -> dict[str, str]:
    return {} if job.original_name is None else {"originalName": job.original_name}
