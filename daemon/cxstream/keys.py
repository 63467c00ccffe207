"""Typed application keys: how handlers reach the daemon's parts without globals."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web

from cxstream.audit import AuditLog
from cxstream.config import Config
from cxstream.fetcher.pool import WorkerPool
from cxstream.journal import Journal
from cxstream.metrics import Metrics


@dataclass
class Lifecycle:
    """The daemon's phase, read by the webhook (503 when draining) and /readyz."""

    listening: bool = False
    draining: bool = False


CONFIG = web.AppKey("config", Config)
AUDIT = web.AppKey("audit", AuditLog)
METRICS = web.AppKey("metrics", Metrics)
JOURNAL = web.AppKey("journal", Journal)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
SESSION = web.AppKey("session", aiohttp.ClientSession)
POOL = web.AppKey("pool", WorkerPool)
