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

    async def failed(
        self,
        err: FetchError,
        *,
        immediate: bool = False,
        undo: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Account for ``err``; return when the next attempt may start, or raise GiveUp.

        ``immediate``: retry at once (a stall or cut after progress was made).
        ``undo`` (dropping bytes that failed verification) runs only when another
        attempt follows: the last failure's bytes stay for quarantine.
        """
        self._metrics.retries.labels(reason=err.code.split(":")[0]).inc()
        throttled = (
            err.status in (429, 503)
            and err.retry_after is not None
            and self._throttled_s < self._throttle_budget_s
        )
        if throttled:
            # The server said "later" and how much later: load, not failure.
            # The wait is paid from the throttle budget in seconds, not attempts.
            self._throttles += 1
            delay = self._server_delay(err, self._throttles)
            self._throttled_s += delay
        else:
            self.failures += 1
            if self.failures >= self._max:
                await self._persist(self.failures, err.code)
                raise GiveUp(err)
            if err.retry_after is not None:
                delay = self._server_delay(err, self.failures)
            else:
                delay = 0.0 if immediate else self._backoff.delay(self.failures)
        if undo is not None:
            await undo()
        await self._persist(self.failures, err.code)
        extra = {"throttled": True} if throttled else {}
        self._audit.warning(
            "stream.retry",
            status=err.status,
            error=err.code,
            delay_s=round(delay, 3),
            attempt=self.attempts,
            **extra,
        )
        if delay:
            await asyncio.sleep(delay)

    def _server_delay(self, err: FetchError, n: int) -> float:
        """Retry-After, bounded against a nonsense date and floored by our backoff,
        so that a "Retry-After: 0" storm cannot spin through the budget."""
        assert err.retry_after is not None
        return max(min(err.retry_after, _RETRY_AFTER_MAX_S), self._backoff.delay(n))
