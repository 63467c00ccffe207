"""How a failed call is classified: the one place that decides retry or give up."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class FetchError(Exception):
    """A failure worth another attempt, after ``retry_after`` if the server said so."""

    def __init__(
        self, code: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(code)
        self.code = code
        self.status = status
        self.retry_after = retry_after


class PermanentError(FetchError):
    """No retry can help (404, 400, 416, a request no plan can satisfy)."""


class RangeNotSatisfiable(PermanentError):
    """416. Permanent for a plain request (a bad offset); for a resume, the
    server's ``Content-Range: bytes */LENGTH`` says whether we already have it all."""

    def __init__(self, code: str, *, length: int | None) -> None:
        super().__init__(code, status=416)
        self.length = length


class CodecUnavailable(FetchError):
    """406: move on to the next codec in preference order."""


class SegmentLimit(FetchError):
    """413: the server wants fewer segments per request than we asked for."""

    def __init__(self, code: str, *, status: int, max_segments: int | None) -> None:
        super().__init__(code, status=status)
        self.max_segments = max_segments


class Stalled(FetchError):
    """The idle watchdog fired: no byte for ``idle_timeout_s``."""


class IntegrityError(FetchError):
    """Bytes arrived but do not verify (digest, size, container)."""


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

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        # The exponent is bounded: past 2**60 the cap has long won, and a
        # float cannot hold 2**1024 (a sink down for days must not crash us).
        ceiling = min(self.cap, self.base * (2 ** min(max(0, failures - 1), 60)))
        return (rng or random).uniform(0, ceiling)
