"""Event-loop lag: how late a short timer fires, sampled for the daemon's whole life.

Every stream, webhook and checkpoint shares one event loop; anything that holds
it (a big hash on the loop, a burst of callbacks) delays them all. A timer due
every ``interval_s`` that fires late measures exactly that delay, at the cost
of ten wake-ups a second. ``cxstream_event_loop_lag_seconds`` is the histogram.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import Histogram

from cxstream.keys import METRICS

INTERVAL_S = 0.1


async def sample_lag(histogram: Histogram, interval_s: float = INTERVAL_S) -> None:
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        histogram.observe(max(0.0, loop.time() - due))


async def loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx`` entry: the sampler runs while the app does."""
    task = asyncio.create_task(sample_lag(app[METRICS].loop_lag), name="cxstream-loop-lag")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
