"""The attempt budget of one job: count, persist, audit, wait, or give up."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from cxstream.audit import AuditLog
from cxstream.fetcher.errors import Backoff, FetchError
from cxstream.metrics import Metrics

_RETRY_AFTER_MAX_S = 3600.0


class GiveUp(Exception):
    def __init__(self, last: FetchError) -> None:
        super().__init__(last.code)
        self.last = last


class Tries:
    """``attempts`` is 1 + the failures so far, carried across restarts by the journal."""

    def __init__(
        self,
        *,
        failures: int,
        max_attempts: int,
        backoff: Backoff,
        audit: AuditLog,
        metrics: Metrics,
        persist: Callable[[int, str], Awaitable[None]],
        throttle_budget_s: float = 0.0,
    ) -> None:
        self.failures = failures
        self._throttle_budget_s = throttle_budget_s
        self._throttled_s = 0.0
        self._throttles = 0
        self._max = max_attempts
        self._backoff = backoff
        self._audit = audit
        self._metrics = metrics
        self._persist = persist

    @property
    def attempts(self) -> int:
        return self.failures + 1

    async def _throttle(self, err: FetchError) -> None:
        """The server said "later" and how much later: load, not failure. The wait
        is paid from the job's throttle budget in seconds, not from its attempts."""
        assert err.retry_after is not None
        self._throttles += 1
        self._metrics.retries.labels(reason=err.code.split(":")[0]).inc()
        # A "Retry-After: 0" storm still backs off, so it cannot spin.
        backoff = self._backoff.delay(self._throttles)
        delay = max(min(err.retry_after, _RETRY_AFTER_MAX_S), backoff)
        self._throttled_s += delay
        await self._persist(self.failures, err.code)
        self._audit.warning(
            "stream.retry",
            status=err.status,
            error=err.code,
            delay_s=round(delay, 3),
            attempt=self.attempts,
            throttled=True,
        )
        await asyncio.sleep(delay)

    async def failed(
        self,
        err: FetchError,
        *,
        immediate: bool = False,
        undo: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Account for ``err``; return when the next attempt may start, or raise GiveUp.

        ``undo`` (dropping bytes that failed verification) runs only when another
        attempt follows: the last failure's bytes stay for quarantine.
        """
        if (
            err.status in (429, 503)
            and err.retry_after is not None
            and self._throttled_s < self._throttle_budget_s
        ):
            await self._throttle(err)
            return
        self.failures += 1
        self._metrics.retries.labels(reason=err.code.split(":")[0]).inc()
        if self.failures >= self._max:
            await self._persist(self.failures, err.code)
            raise GiveUp(err)
        if undo is not None:
            await undo()
        await self._persist(self.failures, err.code)
        if err.retry_after is not None:
            # The server knows its own load better than our cap does (the bound
            # only guards against a nonsense date); but a "Retry-After: 0" storm
            # must not burn the whole budget in milliseconds.
            backoff = self._backoff.delay(self.failures)
            delay = max(min(err.retry_after, _RETRY_AFTER_MAX_S), backoff)
        elif immediate and self.failures == 1:
            delay = 0.0
        else:
            delay = self._backoff.delay(self.failures)
        self._audit.warning(
            "stream.retry",
            status=err.status,
            error=err.code,
            delay_s=round(delay, 3),
            attempt=self.attempts,
        )
        if delay:
            await asyncio.sleep(delay)
