"""Turn a recording's segments into stream requests the server will accept.

Pure functions: the fetcher re-plans the segments still to fetch whenever a
limit changes (a 413 lowering ``maxSegments``), so the plan is always derived,
never stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class PlanError(ValueError):
    """The request cannot be met by any plan (a permanent failure)."""


@dataclass(frozen=True, slots=True)
class Segment:
    offset: int
    duration: int


@dataclass(frozen=True, slots=True)
class Batch:
    segments: tuple[Segment, ...]

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(s.offset for s in self.segments)

    @property
    def seconds(self) -> int:
        return sum(s.duration for s in self.segments)

    @property
    def offsets_param(self) -> str:
        # The API wants "0,15,30": a JSON list here is a 400 schema_validation.
        return ",".join(str(o) for o in self.offsets)


def select(segments: Sequence[Segment], wanted: Iterable[int] | None) -> tuple[Segment, ...]:
    """The segments to fetch, in offset order; every wanted offset must exist."""
    ordered = tuple(sorted(segments, key=lambda s: s.offset))
    if wanted is None:
        return ordered
    by_offset = {s.offset: s for s in ordered}
    wanted = sorted(set(wanted))
    missing = [o for o in wanted if o not in by_offset]
    if missing:
        shown = ",".join(str(o) for o in missing[:5])
        raise PlanError(f"offsets not in the recording: {shown}")
    return tuple(by_offset[o] for o in wanted)


def plan(segments: Sequence[Segment], max_segments: int, max_duration: int) -> tuple[Batch, ...]:
    """Greedy batches in order, each within both caps: fewest requests for a fixed order."""
    if max_segments < 1:
        raise PlanError(f"maxSegmentsPerRequest is {max_segments}")
    batches: list[Batch] = []
    current: list[Segment] = []
    seconds = 0
    for seg in segments:
        if seg.duration > max_duration:
            raise PlanError(
                f"segment at {seg.offset} lasts {seg.duration}s, over maxDuration {max_duration}s"
            )
        if current and (len(current) == max_segments or seconds + seg.duration > max_duration):
            batches.append(Batch(tuple(current)))
            current, seconds = [], 0
        current.append(seg)
        seconds += seg.duration
    if current:
        batches.append(Batch(tuple(current)))
    return tuple(batches)
