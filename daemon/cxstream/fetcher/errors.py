"""What can go wrong while fetching, each kind of failure a class of its own.

The class is the retry decision (see ``budget.py``): nothing downstream reads
an error's text to decide what to do. ``code`` is short and stable (metric
labels, the journal's ``last_error``); ``detail`` says more, for people.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class FetchError(Exception):
    """A transient failure: another attempt after a backoff may succeed."""

    def __init__(
        self,
        code: str,
        detail: str | None = None,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.code = code
        self.detail = detail
        self.status = status
        self.retry_after = retry_after
        super().__init__(self.text)

    @property
    def text(self) -> str:
        """``code`` or ``code: detail``: what audit lines and the journal show."""
        return self.code if self.detail is None else f"{self.code}: {self.detail}"


class Throttled(FetchError):
    """429/503 with ``Retry-After``: load, not failure; paid from the throttle budget."""


class NotReady(FetchError):
    """The platform has no media yet (transcoding, "not found" right after a call):
    a wait paid from ``source.not_ready_grace_s``."""


class Interrupted(FetchError):
    """The response broke off (a stall, a cut connection): resume where it stopped."""


class Stalled(Interrupted):
    """The idle watchdog fired: no byte for ``idle_timeout_s``."""


class VerificationError(FetchError):
    """Bytes arrived but do not verify (digest, size, container, bound)."""


class PermanentError(FetchError):
    """No retry can help (404, 400, a request no plan can satisfy, an archived file)."""


class RangeNotSatisfiable(PermanentError):
    """416. Permanent for a plain request (a bad offset); for a resume, the
    server's ``Content-Range: bytes */LENGTH`` says whether we already have it all."""

    def __init__(self, code: str, *, length: int | None) -> None:
        super().__init__(code, status=416)
        self.length = length


class CodecUnavailable(FetchError):
    """406, or a format the platform reports an error for: move to the next one."""


class SegmentLimit(FetchError):
    """413: the server wants fewer segments per request than we asked for."""

    def __init__(self, code: str, *, status: int, max_segments: int | None) -> None:
        super().__init__(code, status=status)
        self.max_segments = max_segments


class DiskFull(Exception):
    """ENOSPC/EDQUOT while writing: an outage of ours, never charged to the recording."""

    def __init__(self, path: str) -> None:
        super().__init__(f"disk_full: {path}")
        self.path = path


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog), capped."""

    base: float
    cap: float

    def ceiling(self, failures: int) -> float:
        # The exponent is bounded: past 2**60 the cap has long won, and a
        # float cannot hold 2**1024 (a sink down for days must not crash us).
        return float(min(self.cap, self.base * (2 ** min(max(0, failures - 1), 60))))

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        return (rng or random).uniform(0, self.ceiling(failures))

    def floor(self, failures: int, rng: random.Random | None = None) -> float:
        """Equal jitter: never below half the ceiling, so a wait is always a wait."""
        half = self.ceiling(failures) / 2
        return half + (rng or random).uniform(0, half)
