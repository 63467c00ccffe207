"""The journal's interface and the records that cross it.

Kept to what a second backend (PostgreSQL, for several nodes sharing one
queue) must provide: every method is one transaction, and ``claim`` is the
only way a job leaves the queue, so two workers can never hold the same job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable


class JournalError(Exception):
    """The journal could not record something (disk full, locked, corrupt)."""


class LeaseLost(JournalError):
    """This node no longer holds the job: its lease ran out and another node took it.

    Only a shared journal (PostgreSQL) raises it. Whatever this node was doing
    for the job must stop without writing anything more about it.
    """


class Enqueued(StrEnum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


# What a job names: one recording, or a whole contact whose recordings the
# fetcher lists (and fans out) when it runs.
Scope = Literal["recording", "contact"]


@dataclass(frozen=True, slots=True)
class JobRequest:
    """What a verified webhook asks for.

    ``recording_id`` is the job's name: unique in the journal, the file name.
    It is the webhook's id when that id is a safe name, else a mapped one with
    the id as the platform spelled it in ``original_name``.
    """

    webhook_id: str | None  # None: unsigned (bearer/basic), idempotent on the name alone
    recording_id: str
    contact_id: str | None
    codec: str | None
    offsets: tuple[int, ...] | None
    day: str  # "YYYY/MM/DD": the folder the recording is filed under
    original_name: str | None = None  # the id the name was mapped from; None if unchanged
    scope: Scope = "recording"
    # Where a fanned-out job finds its file again (a platform recording id, a file index).
    source_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far a job got: enough to resume after a crash without a re-download.

    ``done`` counts the wanted segments already complete in the part file;
    ``batch`` is the batch in flight, whose bytes start at ``batch_start`` and
    are durable up to ``offset`` (both file positions).
    """

    codec: str
    done: int
    batch: tuple[int, ...]
    batch_start: int
    offset: int

    def to_json(self) -> dict[str, Any]:
        return {
            "codec": self.codec,
            "done": self.done,
            "batch": list(self.batch),
            "batch_start": self.batch_start,
            "offset": self.offset,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Checkpoint:
        return cls(
            codec=str(raw["codec"]),
            done=int(raw["done"]),
            batch=tuple(int(o) for o in raw["batch"]),
            batch_start=int(raw["batch_start"]),
            offset=int(raw["offset"]),
        )


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    recording_id: str
    contact_id: str | None
    codec: str | None
    offsets: tuple[int, ...] | None
    day: str
    attempts: int
    checkpoint: Checkpoint | None
    original_name: str | None = None  # as in JobRequest; the platform's id is this or the name
    scope: Scope = "recording"
    source_ref: str | None = None


@dataclass(frozen=True, slots=True)
class Announcement:
    """One archive callback, delivered at least once under a fixed webhook-id."""

    id: int
    webhook_id: str
    recording_id: str
    body: bytes
    attempts: int
    next_at: float


class Journal(Protocol):
    location: str  # what journal.opened shows: a file, or postgresql://host:port/db

    async def open(self) -> None: ...
    async def enqueue(self, request: JobRequest) -> Enqueued: ...
    async def requeue_running(self) -> int: ...
    async def claim(self) -> Job | None: ...
    async def save_progress(
        self, job_id: int, attempts: int, checkpoint: Checkpoint | None, error: str | None
    ) -> None: ...
    async def release(self, job_id: int) -> None: ...
    async def complete(
        self, job_id: int, attempts: int, result: dict[str, Any], announcement: bytes | None
    ) -> None: ...
    async def fail(self, job_id: int, attempts: int, error: str) -> None: ...
    async def due_announcements(self, now: float, limit: int) -> list[Announcement]: ...
    async def delivered(self, announcement_id: int) -> None: ...
    async def reschedule(
        self, announcement_id: int, attempts: int, next_at: float, error: str
    ) -> None: ...
    async def next_announcement_at(self) -> float | None: ...
    async def backlog(self) -> tuple[int, float | None]: ...
    async def queued(self) -> tuple[int, float | None]: ...
    async def counts(self) -> dict[str, int]: ...
    async def healthy(self) -> bool: ...
    async def close(self) -> None: ...


@runtime_checkable
class WakesWorkers(Protocol):
    """A shared journal that can tell idle workers a job was queued on another node."""

    def on_work(self, callback: Callable[[], None]) -> None: ...
    async def wait_for_work(self) -> None: ...


@dataclass(frozen=True, slots=True)
class JobInfo:
    """One job as an operator sees it (``cxstream jobs``, ``cxstream status``).

    ``offset`` is the durable part-file position of a job in progress (its
    checkpoint), ``result`` the sidecar of a completed one. ``run_started_at``
    and ``run_start_offset`` say when the current run claimed the job and
    where it stood then, which is what a rate is computed from.
    """

    recording_id: str
    state: JobState
    attempts: int
    error: str | None
    contact_id: str | None
    codec: str | None
    day: str
    created_at: float
    updated_at: float
    offset: int | None
    result: dict[str, Any] | None
    run_started_at: float | None
    run_start_offset: int | None


class JournalOps(Protocol):
    """What the operations CLI asks of a journal, beside ``Journal``.

    Each call is one short transaction, safe while a daemon uses the same journal.
    """

    async def jobs(
        self, state: JobState | None, since: float | None, limit: int
    ) -> list[JobInfo]: ...
    async def job(self, recording_id: str) -> JobInfo | None: ...
    async def count(self, state: JobState, since: float) -> int: ...
    async def retry(self, recording_ids: Sequence[str] | None) -> list[str]:
        """Re-queue these failed jobs (None: every failed job); the ids re-queued."""
        ...

    async def take(self, request: JobRequest) -> Job | JobState:
        """Claim one recording now (queued, failed or new); else the state in the way."""
        ...
