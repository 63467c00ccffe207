"""The attempt budget of one job, as a pure object: given an error, what next.

It holds the counters and answers ``Retry(delay)`` or ``GiveUp``; the job
does the rest (undo, persist, audit, sleep). Three budgets, one per kind of
"not now":

- failures (``streams.max_attempts``): every error that is a real failure;
- throttling (``streams.throttle_budget_s``): seconds waited on 429/503 with
  ``Retry-After`` — load, not failure, until it outlasts its budget;
- not ready (``source.not_ready_grace_s``): seconds waited for a platform
  to have the media at all (transcoding, "not found" right after a call).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cxstream.fetcher.errors import (
    Backoff,
    FetchError,
    Interrupted,
    NotReady,
    PermanentError,
    Throttled,
)

_RETRY_AFTER_MAX_S = 3600.0
_NOT_READY_DEFAULT_S = 5.0


@dataclass(frozen=True, slots=True)
class Retry:
    delay_s: float
    counted: bool  # False: a throttle or not-ready wait, paid from its own budget
    wait: str | None = None  # "throttled" or "not_ready" when not counted


@dataclass(frozen=True, slots=True)
class GiveUp:
    error: FetchError


class AttemptBudget:
    """``attempts`` is 1 + the failures so far (carried across restarts by the journal)."""

    def __init__(
        self,
        *,
        max_attempts: int,
        backoff: Backoff,
        throttle_budget_s: float = 0.0,
        not_ready_grace_s: float = 0.0,
        failures: int = 0,
        rng: random.Random | None = None,
    ) -> None:
        self.failures = failures
        self._max = max_attempts
        self._backoff = backoff
        self._throttle_budget_s = throttle_budget_s
        self._not_ready_grace_s = not_ready_grace_s
        self._rng = rng
        self.throttled_s = 0.0
        self.not_ready_s = 0.0
        self._waits = 0

    @property
    def attempts(self) -> int:
        return self.failures + 1

    def decide(self, err: FetchError, *, progressed: bool = False) -> Retry | GiveUp:
        """Account for ``err``. ``progressed``: bytes arrived since the last failure,
        so an interruption resumes at once instead of backing off."""
        if isinstance(err, PermanentError):
            self.failures += 1
            return GiveUp(err)
        if isinstance(err, Throttled) and self.throttled_s < self._throttle_budget_s:
            self._waits += 1
            delay = self._server_delay(err, self._waits)
            self.throttled_s += delay
            return Retry(delay, counted=False, wait="throttled")
        if isinstance(err, NotReady):
            return self._not_ready(err)
        self.failures += 1
        if self.failures >= self._max:
            return GiveUp(err)
        if err.retry_after is not None:
            return Retry(self._server_delay(err, self.failures), counted=True)
        if isinstance(err, Interrupted) and progressed:
            return Retry(0.0, counted=True)
        return Retry(self._backoff.delay(self.failures, self._rng), counted=True)

    def _not_ready(self, err: NotReady) -> Retry | GiveUp:
        if self.not_ready_s >= self._not_ready_grace_s:
            self.failures += 1
            return GiveUp(PermanentError("not_ready", err.text, status=err.status))
        hint = err.retry_after if err.retry_after is not None else _NOT_READY_DEFAULT_S
        delay = min(max(hint, 0.5), self._not_ready_grace_s - self.not_ready_s, _RETRY_AFTER_MAX_S)
        self.not_ready_s += delay
        return Retry(delay, counted=False, wait="not_ready")

    def _server_delay(self, err: FetchError, n: int) -> float:
        """Retry-After, bounded against a nonsense date and floored by our backoff,
        so that a "Retry-After: 0" storm cannot spin through the budget."""
        asked = err.retry_after or 0.0
        return max(min(asked, _RETRY_AFTER_MAX_S), self._backoff.floor(n, self._rng))
