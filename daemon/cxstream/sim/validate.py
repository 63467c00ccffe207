"""Validation of a stream request's query and Range header (contract §1.3).

Checks run in a fixed order so a request with several faults gets a
predictable answer: malformed parameters (400 schema_validation) first, then
too many offsets (413), offsets off a segment boundary (416), an unavailable
codec (406) and finally the maxDuration bounds (400 max_duration_exceeded).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from multidict import MultiMapping

from cxstream.sim.responses import ApiError
from cxstream.sim.spec import CODECS, RecordingSpec

# ASCII digits only: str.isdigit and \d would accept other scripts' digits. The
# length cap keeps int() well away from its 4300-digit guard.
OFFSETS_RE = re.compile(r"[0-9]{1,18}(?:,[0-9]{1,18})*")
INTEGER_RE = re.compile(r"[0-9]{1,18}")
RANGE_RE = re.compile(r"bytes=([0-9]{1,30})-")


@dataclass(frozen=True, slots=True)
class StreamQuery:
    offsets: tuple[int, ...]
    indices: tuple[int, ...]
    codec: str
    max_duration: int


def _single(query: MultiMapping[str], name: str) -> str:
    values = query.getall(name, [])
    if len(values) != 1:
        problem = "missing" if not values else "given more than once"
        raise ApiError(400, "schema_validation", parameter=name, reason=problem)
    return values[0]


def parse_offsets(raw: str | None) -> list[int] | None:
    """The offsets list if ``raw`` is well-formed comma-separated decimals, else None."""
    if raw is None or not OFFSETS_RE.fullmatch(raw):
        return None
    return [int(part) for part in raw.split(",")]


def validate_stream_query(spec: RecordingSpec, query: MultiMapping[str]) -> StreamQuery:
    offsets = parse_offsets(_single(query, "offsets"))
    if offsets is None:
        raise ApiError(
            400, "schema_validation", parameter="offsets", reason="comma-separated integers"
        )
    if any(b <= a for a, b in itertools.pairwise(offsets)):
        raise ApiError(400, "schema_validation", parameter="offsets", reason="strictly increasing")
    codec = _single(query, "codec")
    if codec not in CODECS:
        raise ApiError(400, "schema_validation", parameter="codec", reason="opus or pcm")
    raw_duration = _single(query, "maxDuration")
    if not INTEGER_RE.fullmatch(raw_duration):
        raise ApiError(400, "schema_validation", parameter="maxDuration", reason="integer")
    max_duration = int(raw_duration)

    if len(offsets) > spec.segment_limit:
        raise ApiError(413, "offset_matrix_too_large", maxSegments=spec.segment_limit)
    seconds = spec.segment_seconds
    bad = [o for o in offsets if o % seconds or o // seconds >= spec.segments]
    if bad:
        raise ApiError(416, "offset_out_of_range", offset=bad[0])
    if codec not in spec.codecs:
        raise ApiError(406, "codec_unavailable", available=list(spec.codecs))
    requested = seconds * len(offsets)
    if max_duration > spec.max_duration:
        raise ApiError(400, "max_duration_exceeded", limit=spec.max_duration)
    if max_duration < requested:
        raise ApiError(
            400, "max_duration_exceeded", limit=spec.max_duration, requestedSeconds=requested
        )
    return StreamQuery(
        offsets=tuple(offsets),
        indices=tuple(o // seconds for o in offsets),
        codec=codec,
        max_duration=max_duration,
    )


def parse_range(header: str | None) -> int | None:
    """The N of ``bytes=N-``; anything else is ignored (None), as RFC 9110 allows."""
    if header is None:
        return None
    match = RANGE_RE.fullmatch(header.strip())
    return int(match.group(1)) if match else None
