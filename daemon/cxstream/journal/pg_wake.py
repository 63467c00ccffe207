"""LISTEN/NOTIFY: a job queued on any node wakes idle workers on every node.

One dedicated connection (a pooled one cannot hold a LISTEN) waits for
notifications and calls the subscribers. A notification is only a hint:
workers still claim through the journal, and keep polling as a fallback, so
a lost connection costs latency, never a job. After every (re)connect the
subscribers are woken once, because notifications sent while disconnected
are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg

JOBS_CHANNEL = "cxstream_jobs"
_RETRY_MIN_S, _RETRY_MAX_S = 0.5, 30.0
log = logging.getLogger(__name__)


class Listener:
    def __init__(
        self,
        conninfo: str,
        channel: str,
        connect_kwargs: dict[str, Any],
        scrub: Callable[[str], str],
    ) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._kwargs = connect_kwargs
        self._scrub = scrub
        self._callbacks: list[Callable[[], None]] = []
        self._waiters: set[asyncio.Future[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    async def wait(self) -> None:
        """Until the next notification (or reconnect); bound it with ``asyncio.timeout``."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"cxstream-listen-{self._channel}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _fire(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        for callback in self._callbacks:
            try:
                callback()
            except Exception:
                log.exception("a work subscriber failed")

    async def _run(self) -> None:
        delay = _RETRY_MIN_S
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, **self._kwargs
                )
                async with conn:
                    await conn.execute(f"LISTEN {self._channel}")
                    self.connected.set()
                    delay = _RETRY_MIN_S
                    self._fire()
                    async for _ in conn.notifies():
                        self._fire()
            except psycopg.Error as exc:
                log.warning(
                    "journal notifications unavailable, polling until back: %s",
                    self._scrub(str(exc)),
                )
            self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)
