"""The planner's promises, over arbitrary recordings and limits (hypothesis)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cxstream.planner import PlanError, Segment, plan, select


@st.composite
def recordings(draw: st.DrawFn) -> tuple[list[Segment], int, int]:
    durations = draw(st.lists(st.integers(1, 60), min_size=1, max_size=80))
    segments, offset = [], 0
    for d in durations:
        segments.append(Segment(offset, d))
        offset += d
    max_segments = draw(st.integers(1, 6))
    max_duration = draw(st.integers(max(durations), 400))
    return segments, max_segments, max_duration


@given(recordings(), st.data())
def test_every_wanted_segment_once_in_order_within_both_caps(rec, data) -> None:
    segments, max_segments, max_duration = rec
    wanted = data.draw(
        st.none() | st.lists(st.sampled_from([s.offset for s in segments]), min_size=1)
    )
    chosen = select(segments, wanted)
    batches = plan(chosen, max_segments, max_duration)
    flat = [seg for b in batches for seg in b.segments]
    assert flat == list(chosen)
    expected = sorted(set(wanted)) if wanted is not None else [s.offset for s in segments]
    assert [s.offset for s in flat] == expected
    for b in batches:
        assert 1 <= len(b.segments) <= max_segments
        assert b.seconds <= max_duration
        assert list(b.offsets) == sorted(set(b.offsets))
        assert b.offsets_param == ",".join(map(str, b.offsets))
        assert "[" not in b.offsets_param and " " not in b.offsets_param


@given(recordings())
def test_greedy_plan_uses_no_more_requests_than_needed(rec) -> None:
    segments, max_segments, max_duration = rec
    batches = plan(segments, max_segments, max_duration)
    # Merging any two neighbours must break a cap, or greedy left work undone.
    for a, b in itertools.pairwise(batches):
        merged = (
            len(a.segments) + 1 > max_segments or a.seconds + b.segments[0].duration > max_duration
        )
        assert merged


def test_offsets_param_is_comma_separated() -> None:
    batch = plan([Segment(0, 15), Segment(15, 15), Segment(30, 15)], 3, 180)[0]
    assert batch.offsets_param == "0,15,30"


def test_unknown_offset_is_rejected() -> None:
    with pytest.raises(PlanError, match="not in the recording"):
        select([Segment(0, 15), Segment(15, 15)], [0, 7])


def test_segment_longer_than_max_duration_is_impossible() -> None:
    with pytest.raises(PlanError, match="over maxDuration"):
        plan([Segment(0, 200)], 3, 180)
