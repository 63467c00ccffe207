"""The journal: where a job becomes durable before CXone ever hears of it."""

from cxstream.journal.base import (
    Announcement,
    Checkpoint,
    Enqueued,
    Job,
    JobInfo,
    JobRequest,
    JobState,
    Journal,
    JournalError,
    JournalOps,
)
from cxstream.journal.sqlite import SqliteJournal

__all__ = [
    "Announcement",
    "Checkpoint",
    "Enqueued",
    "Job",
    "JobInfo",
    "JobRequest",
    "JobState",
    "Journal",
    "JournalError",
    "JournalOps",
    "SqliteJournal",
]
