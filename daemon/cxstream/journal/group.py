"""Group commit: many callers' transactions become one SQLite transaction and one fsync.

With ``synchronous=FULL`` every commit is an fsync, and an fsync is the cost
that matters: about a millisecond on an idle SSD, tens of milliseconds while
the recordings being archived are flushed to the same disk. So writes are not
run one transaction each. A caller queues its unit of work; the journal's one
thread takes *everything queued at that moment*, runs each unit inside a
savepoint of one ``BEGIN IMMEDIATE`` transaction, commits once, and only then
gives each caller its own result. A webhook's 202 therefore still comes after
the commit that holds its job, but a burst of webhooks, checkpoints and claims
shares one fsync instead of queueing for one each.

A unit that fails (a constraint, a trigger, a bug) is rolled back to its
savepoint and fails alone; if the transaction itself cannot begin or commit,
or SQLite rolls it back whole (disk full, I/O error), every caller in the
group gets a JournalError and none of their work is kept.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

from cxstream.journal.base import JournalError

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Pending:
    work: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _Outcome:
    pending: _Pending
    value: Any = None
    error: BaseException | None = None


def _journal_error(exc: BaseException) -> JournalError:
    return JournalError(f"{exc.__class__.__name__}: {exc}")


def _resolve(group: asyncio.Future[list[_Outcome]]) -> None:
    """On the event loop, once the group's transaction is over: each caller's answer."""
    if group.cancelled():
        return
    for outcome in group.result():
        future = outcome.pending.future
        if future.done():
            continue  # its caller was cancelled; the work is committed all the same
        if outcome.error is not None:
            future.set_exception(outcome.error)
        else:
            future.set_result(outcome.value)


class GroupCommit:
    """Runs queued units of work on ``executor``'s one thread, a group per transaction."""

    def __init__(
        self,
        executor: Executor,
        connection: Callable[[], sqlite3.Connection | None],
        on_commit: Callable[[float], None] | None = None,
    ) -> None:
        self._executor = executor
        self._connection = connection
        # Told how long each writing COMMIT (the fsync) took: a slow disk shows
        # here before it shows as slow webhooks. Called on the journal thread.
        self._on_commit = on_commit
        # Work waiting for the thread, and whether a group job is already
        # submitted to take it. The lock covers a list append or swap only; it
        # lets the thread take "everything waiting now" when it starts, not
        # what was waiting when its job was submitted.
        self._queue: list[_Pending] = []
        self._submitted = False
        self._lock = threading.Lock()
        self.groups = 0  # transactions run (observation: tests and benchmarks)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(db)`` inside the next group transaction; its result once that committed.

        SQLite errors become JournalError. Any other exception from ``work`` is
        raised as it is (a bug, not an unavailable journal).
        """
        loop = asyncio.get_running_loop()
        pending = _Pending(work, loop.create_future())
        with self._lock:
            self._queue.append(pending)
            submit, self._submitted = not self._submitted, True
        if submit:
            try:
                group = loop.run_in_executor(self._executor, self._run_group)
            except RuntimeError:
                # The executor is shut: the journal was closed under a late caller.
                with self._lock:
                    self._queue.remove(pending)
                    self._submitted = False
                raise JournalError("journal is closed") from None
            group.add_done_callback(_resolve)
        try:
            result: T = await pending.future
        except sqlite3.Error as exc:
            raise _journal_error(exc) from exc
        return result

    # -- on the journal thread --------------------------------------------

    def _run_group(self) -> list[_Outcome]:
        with self._lock:
            group, self._queue = self._queue, []
            self._submitted = False
        if not group:
            return []
        self.groups += 1
        try:
            return self._transaction(group)
        except Exception as exc:
            # Never raise from here: the callers' futures are only in this list.
            if not isinstance(exc, sqlite3.Error):
                log.exception("journal group failed")
            return [_Outcome(p, error=_journal_error(exc)) for p in group]

    def _transaction(self, group: list[_Pending]) -> list[_Outcome]:
        db = self._connection()
        if db is None:
            raise sqlite3.ProgrammingError("journal is closed")
        db.execute("BEGIN IMMEDIATE")
        try:
            before = db.total_changes
            outcomes = [self._isolated(db, p) for p in group]
            wrote = db.total_changes != before
            started = time.perf_counter()
            db.execute("COMMIT")
            if wrote and self._on_commit is not None:
                self._on_commit(time.perf_counter() - started)
        except BaseException:
            # Also when COMMIT itself fails (SQLITE_BUSY): a transaction left
            # open would make every later BEGIN fail until a restart.
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return outcomes

    def _isolated(self, db: sqlite3.Connection, pending: _Pending) -> _Outcome:
        db.execute("SAVEPOINT unit")
        try:
            value = pending.work(db)
        except Exception as exc:
            if not db.in_transaction:
                # SQLite rolled the whole transaction back (disk full, I/O
                # error): nothing of the group is left to commit.
                raise
            db.execute("ROLLBACK TO unit")
            db.execute("RELEASE unit")
            return _Outcome(pending, error=exc)
        db.execute("RELEASE unit")
        return _Outcome(pending, value=value)
