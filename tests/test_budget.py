"""The attempt budget (fetcher/budget.py): every rule, with a seeded random source."""

from __future__ import annotations

import random

import pytest

from cxstream.fetcher.budget import AttemptBudget, GiveUp, Retry
from cxstream.fetcher.errors import (
    Backoff,
    CodecUnavailable,
    FetchError,
    Interrupted,
    NotReady,
    PermanentError,
    RangeNotSatisfiable,
    Stalled,
    Throttled,
    VerificationError,
)

BACKOFF = Backoff(base=1.0, cap=8.0)


def budget(**kw: object) -> AttemptBudget:
    args: dict[str, object] = {"max_attempts": 4, "backoff": BACKOFF, "rng": random.Random(7)}
    args.update(kw)
    return AttemptBudget(**args)  # type: ignore[arg-type]


def retry(decision: Retry | GiveUp) -> Retry:
    assert isinstance(decision, Retry), decision
    return decision


def give_up(decision: Retry | GiveUp) -> GiveUp:
    assert isinstance(decision, GiveUp), decision
    return decision


# -- permanent ----------------------------------------------------------------


@pytest.mark.parametrize(
    "err",
    [
        PermanentError("recording_not_found", status=404),
        RangeNotSatisfiable("offset_out_of_range", length=None),
        PermanentError("plan_impossible", "segment too long"),
    ],
)
def test_a_permanent_error_gives_up_at_once_and_counts(err: PermanentError) -> None:
    b = budget()
    decision = give_up(b.decide(err))
    assert decision.error is err
    assert (b.failures, b.attempts) == (1, 2)


# -- counted failures ---------------------------------------------------------


@pytest.mark.parametrize(
    "err",
    [
        FetchError("http_500", status=500),
        VerificationError("repr_digest_mismatch"),
        VerificationError("body_too_large", "more than 10 bytes"),
        CodecUnavailable("codec_unavailable", status=406),
        Stalled("stalled"),
    ],
)
def test_counted_failures_retry_until_max_attempts(err: FetchError) -> None:
    b = budget(max_attempts=4)
    for failures in (1, 2, 3):
        decision = retry(b.decide(err))
        assert decision.counted
        assert b.failures == failures
    last = give_up(b.decide(err))
    assert last.error is err
    assert (b.failures, b.attempts) == (4, 5)


def test_failures_carried_from_the_journal_count_against_the_budget() -> None:
    b = budget(max_attempts=4, failures=3)
    assert b.attempts == 4
    give_up(b.decide(FetchError("http_502", status=502)))


def test_max_attempts_one_gives_up_on_the_first_failure() -> None:
    give_up(budget(max_attempts=1).decide(FetchError("http_500", status=500)))


def test_backoff_is_full_jitter_under_a_growing_capped_ceiling() -> None:
    b = budget(max_attempts=100, rng=random.Random(1))
    delays = [retry(b.decide(FetchError("http_500"))).delay_s for _ in range(8)]
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    # Seeded: the same source gives the same schedule.
    again = budget(max_attempts=100, rng=random.Random(1))
    assert delays == [retry(again.decide(FetchError("http_500"))).delay_s for _ in range(8)]


def test_backoff_ceiling_survives_absurd_failure_counts() -> None:
    assert BACKOFF.ceiling(0) == BACKOFF.ceiling(1) == 1.0
    assert BACKOFF.ceiling(10**6) == 8.0


# -- interruptions ------------------------------------------------------------


@pytest.mark.parametrize(
    "err", [Interrupted("connection_lost", "ClientPayloadError"), Stalled("stalled")]
)
def test_an_interruption_after_progress_resumes_at_once(err: Interrupted) -> None:
    b = budget()
    decision = retry(b.decide(err, progressed=True))
    assert (decision.delay_s, decision.counted, b.failures) == (0.0, True, 1)


def test_an_interruption_without_progress_backs_off() -> None:
    b = budget(backoff=Backoff(base=2.0, cap=2.0), rng=random.Random(3))
    delays = [retry(b.decide(Stalled("stalled"), progressed=False)).delay_s for _ in range(3)]
    assert all(0 <= d <= 2.0 for d in delays)
    assert any(d > 0 for d in delays)


def test_progress_does_not_skip_the_backoff_of_other_errors() -> None:
    b = budget(backoff=Backoff(base=4.0, cap=4.0), rng=random.Random(5))
    decisions = [
        retry(b.decide(VerificationError("repr_digest_mismatch"), progressed=True))
        for _ in range(3)
    ]
    assert any(d.delay_s > 0 for d in decisions)


def test_an_interruption_still_counts_toward_max_attempts() -> None:
    b = budget(max_attempts=2)
    retry(b.decide(Stalled("stalled"), progressed=True))
    give_up(b.decide(Stalled("stalled"), progressed=True))


# -- Retry-After on counted failures -------------------------------------------


def test_retry_after_is_honoured_when_longer_than_the_backoff() -> None:
    b = budget(backoff=Backoff(base=0.1, cap=0.1))
    decision = retry(b.decide(FetchError("http_500", status=500, retry_after=7.0)))
    assert (decision.delay_s, decision.counted) == (7.0, True)


def test_retry_after_zero_is_floored_by_equal_jitter_backoff() -> None:
    b = budget(max_attempts=100, rng=random.Random(11))
    delays = [
        retry(b.decide(FetchError("storage_timeout", status=503, retry_after=0.0))).delay_s
        for _ in range(5)
    ]
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0]
    # Equal jitter: at least half the ceiling, so a "Retry-After: 0" storm still waits.
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays


def test_a_nonsense_retry_after_is_capped_at_an_hour() -> None:
    b = budget()
    decision = retry(b.decide(FetchError("http_500", retry_after=1e9)))
    assert decision.delay_s == 3600.0


# -- throttling -----------------------------------------------------------------


def test_throttling_within_its_budget_is_a_wait_not_a_failure() -> None:
    b = budget(max_attempts=2, throttle_budget_s=10.0, backoff=Backoff(0.01, 0.01))
    for _ in range(3):
        decision = retry(b.decide(Throttled("rate_limited", status=429, retry_after=3.0)))
        assert (decision.delay_s, decision.counted) == (3.0, False)
    assert b.failures == 0 and b.attempts == 1
    assert b.throttled_s == pytest.approx(9.0)


def test_throttling_past_its_budget_counts_as_failures() -> None:
    b = budget(max_attempts=3, throttle_budget_s=5.0, backoff=Backoff(0.01, 0.01))
    assert not retry(b.decide(Throttled("rate_limited", status=429, retry_after=4.0))).counted
    assert not retry(b.decide(Throttled("rate_limited", status=429, retry_after=4.0))).counted
    # 8 s waited, the budget of 5 is spent: from now on a throttle is a failure.
    over = retry(b.decide(Throttled("rate_limited", status=429, retry_after=4.0)))
    assert over.counted and over.delay_s == 4.0
    assert b.failures == 1
    retry(b.decide(Throttled("storage_timeout", status=503, retry_after=4.0)))
    give_up(b.decide(Throttled("storage_timeout", status=503, retry_after=4.0)))


def test_a_zero_throttle_budget_counts_every_throttle() -> None:
    b = budget(throttle_budget_s=0.0)
    assert retry(b.decide(Throttled("rate_limited", status=429, retry_after=1.0))).counted


def test_throttle_waits_are_floored_by_backoff_as_they_repeat() -> None:
    b = budget(throttle_budget_s=1000.0, rng=random.Random(2))
    delays = [
        retry(b.decide(Throttled("rate_limited", status=429, retry_after=0.0))).delay_s
        for _ in range(4)
    ]
    for delay, ceiling in zip(delays, [1.0, 2.0, 4.0, 8.0], strict=True):
        assert ceiling / 2 <= delay <= ceiling


# -- not ready ------------------------------------------------------------------


def test_not_ready_is_waited_out_within_the_grace() -> None:
    b = budget(not_ready_grace_s=12.0)
    first = retry(b.decide(NotReady("not_found", status=404)))
    assert (first.delay_s, first.counted) == (5.0, False)  # no hint: the default
    hinted = retry(b.decide(NotReady("transcoding", status=202, retry_after=2.0)))
    assert hinted.delay_s == 2.0
    tiny = retry(b.decide(NotReady("transcoding", status=202, retry_after=0.0)))
    assert tiny.delay_s == 0.5  # never a busy loop
    rest = retry(b.decide(NotReady("transcoding", status=202, retry_after=60.0)))
    assert rest.delay_s == pytest.approx(12.0 - 7.5)  # never past the grace
    assert b.failures == 0


def test_not_ready_past_the_grace_gives_up_as_not_ready() -> None:
    b = budget(not_ready_grace_s=1.0)
    retry(b.decide(NotReady("transcoding", status=202, retry_after=5.0)))
    decision = give_up(b.decide(NotReady("transcoding", status=202)))
    assert isinstance(decision.error, PermanentError)
    assert decision.error.code == "not_ready"
    assert decision.error.detail == "transcoding"
    assert decision.error.status == 202
    assert b.failures == 1


def test_not_ready_with_no_grace_gives_up_at_once() -> None:
    give_up(budget(not_ready_grace_s=0.0).decide(NotReady("not_found", status=404)))
