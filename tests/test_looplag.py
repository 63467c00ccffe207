"""The event-loop lag probe reports a loop that is held."""

from __future__ import annotations

import asyncio
import time

from cxstream.looplag import sample_lag
from cxstream.metrics import Metrics

NAME = "cxstream_event_loop_lag_seconds"


def _count(m: Metrics, le: str | None = None) -> float:
    if le is None:
        return m.registry.get_sample_value(f"{NAME}_count") or 0.0
    return m.registry.get_sample_value(f"{NAME}_bucket", {"le": le}) or 0.0


async def _samples_reach(m: Metrics, n: float) -> None:
    async with asyncio.timeout(5):
        # Polled: a histogram has nothing to await.
        while _count(m) < n:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_a_held_loop_shows_up_as_lag() -> None:
    metrics = Metrics()
    task = asyncio.create_task(sample_lag(metrics.loop_lag, interval_s=0.01))
    try:
        await _samples_reach(metrics, 3)
        before = _count(metrics)
        time.sleep(0.2)  # noqa: ASYNC251 - holding the loop is what the probe must see
        await _samples_reach(metrics, before + 1)
        assert _count(metrics, "0.1") < _count(metrics)  # a sample over 100 ms late
        assert (metrics.registry.get_sample_value(f"{NAME}_sum") or 0) >= 0.15
    finally:
        task.cancel()
