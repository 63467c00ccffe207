"""Typed application keys: how handlers reach the daemon's parts without globals."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from cxstream.audit import AuditLog
from cxstream.config import Config
from cxstream.fetcher.pool import WorkerPool
from cxstream.journal import Journal
from cxstream.metrics import Metrics
from cxstream.sink.space import DiskGuard
from cxstream.sink.store import Store


@dataclass
class Lifecycle:
    """The daemon's phase, read by the webhook (503 when draining) and /readyz.

    It also counts webhook requests in flight, so that a stop lets the ones
    already past the door finish (their 202 means a committed job) instead of
    cutting them off mid-body.
    """

    listening: bool = False
    draining: bool = False
    inflight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.inflight -= 1
        if not self.inflight:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        return self._idle.is_set()


CONFIG = web.AppKey("config", Config)
AUDIT = web.AppKey("audit", AuditLog)
METRICS = web.AppKey("metrics", Metrics)
JOURNAL = web.AppKey("journal", Journal)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
SESSION = web.AppKey("session", aiohttp.ClientSession)
POOL = web.AppKey("pool", WorkerPool)
GUARD = web.AppKey("guard", DiskGuard)
STORE = web.AppKey("store", Store)
