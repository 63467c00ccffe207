"""One token bucket for every call to the platform's API: work waits, nothing fails.

CXone documents 150 Media Playback requests per 5 minutes. The bucket holds
that many and refills evenly. A 429 halves the rate (the platform knows its
load better than the documentation); each call that goes through without
one wins back a little, up to the configured rate. A wait longer than a
second is one audit line and counted in the metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from cxstream.audit import AuditLog
from cxstream.metrics import Metrics

_FLOOR = 0.05  # never below 5% of the configured rate
_RECOVER = 0.01  # each clean call wins back 1% of the configured rate
_REPORT_S = 1.0


class RateLimiter:
    def __init__(
        self,
        requests: int,
        window_s: float,
        *,
        audit: AuditLog | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._sleep = sleep
        self._capacity = float(requests)
        self._full_rate = requests / window_s if requests else 0.0
        self._rate = self._full_rate
        self._tokens = self._capacity
        self._clock = clock
        self._at = clock()
        self._audit = audit
        self._metrics = metrics
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self._capacity > 0

    @property
    def rate(self) -> float:
        return self._rate

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._at) * self._rate)
        self._at = now

    async def acquire(self) -> None:
        if not self.enabled:
            return
        # One waiter at a time: the first in line gets the next token.
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                wait = (1 - self._tokens) / self._rate
                if self._metrics is not None:
                    self._metrics.ratelimit_wait.inc(wait)
                if wait >= _REPORT_S and self._audit is not None:
                    self._audit.info(
                        "ratelimit.waiting", wait_s=round(wait, 3), rate_per_s=round(self._rate, 4)
                    )
                await self._sleep(wait)
                self._refill()
            self._tokens -= 1
            self._rate = min(self._full_rate, self._rate + self._full_rate * _RECOVER)

    def throttled(self) -> None:
        """The platform said 429: slow down for everyone."""
        if self.enabled:
            self._rate = max(self._full_rate * _FLOOR, self._rate / 2)
