"""The client-side token bucket: work waits for a token, a 429 slows everyone down."""

from __future__ import annotations

import io

import orjson

from cxstream.audit import audit_to
from cxstream.fetcher.ratelimit import RateLimiter
from cxstream.metrics import Metrics


class Clock:
    """Time that moves only when the limiter sleeps: no test waits for real."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def limiter(
    clock: Clock, requests: int = 150, window_s: float = 300.0
) -> tuple[RateLimiter, io.BytesIO, Metrics]:
    out, metrics = io.BytesIO(), Metrics()
    bucket = RateLimiter(
        requests, window_s, audit=audit_to(out), metrics=metrics, clock=clock, sleep=clock.sleep
    )
    return bucket, out, metrics


async def test_a_full_bucket_lets_its_burst_through_then_spaces_calls_evenly() -> None:
    clock = Clock()
    bucket, out, metrics = limiter(clock)
    for _ in range(150):
        await bucket.acquire()
    assert clock.slept == []  # CXone's 150 per 5 minutes: the first 150 go at once
    await bucket.acquire()
    assert clock.slept == [2.0]  # then one every 300/150 s
    lines = [orjson.loads(x) for x in out.getvalue().splitlines()]
    assert [x["event"] for x in lines] == ["ratelimit.waiting"]
    assert lines[0]["wait_s"] == 2.0
    assert metrics.registry.get_sample_value("cxstream_ratelimit_wait_seconds_total") == 2.0


async def test_a_429_halves_the_rate_and_clean_calls_win_it_back_slowly() -> None:
    clock = Clock()
    bucket, _, _ = limiter(clock, requests=10, window_s=10.0)
    for _ in range(10):
        await bucket.acquire()
    bucket.throttled()
    assert bucket.rate == 0.5
    await bucket.acquire()
    assert clock.slept[-1] == 2.0  # a token now takes twice as long
    for _ in range(200):
        await bucket.acquire()
    assert bucket.rate == 1.0  # recovered, and never above what was configured
    for _ in range(20):
        bucket.throttled()
    assert bucket.rate == 0.05  # a floor: work slows down, it never stops


async def test_no_limit_configured_never_waits() -> None:
    clock = Clock()
    bucket, out, _ = limiter(clock, requests=0)
    for _ in range(1000):
        await bucket.acquire()
    bucket.throttled()
    assert clock.slept == [] and out.getvalue() == b"" and not bucket.enabled
