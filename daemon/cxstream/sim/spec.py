"""Recording and fault specifications: what the simulator serves and how it misbehaves.

A spec arrives as a plain mapping (a TOML ``[[recording]]`` table, a JSON
object, or the body of ``POST /_sim/recordings``) and is validated here once,
so the request handlers can trust every field. Errors are ``ValueError`` with a
one-line reason that names the recording and the offending key::

    [[recording]]
    id = "rec-0001"
    segments = 5              # count
    segment_seconds = 15      # 1..15 when opus is offered (cut from 15 s fixtures)
    codecs = ["opus", "pcm"]
    max_segments = 3          # maxSegmentsPerRequest advertised in metadata
    enforce_max_segments = 2  # what the server enforces (default: max_segments)
    max_duration = 180
    faults = [ { kind = "stall", after_bytes = 30000, on = [1] } ]

Faults (``faults = [...]``) and their parameters are described in ``fault_spec.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cxstream.sim.fault_spec import (
    DEFAULT_STATUS,
    FAULT_PARAMS,
    METADATA_FAULTS,
    RETRYABLE_STATUSES,
    FaultSpec,
    fault_from_dict,
    fault_to_dict,
    int_field,
)

__all__ = [
    "DEFAULT_STATUS",
    "FAULT_PARAMS",
    "METADATA_FAULTS",
    "RETRYABLE_STATUSES",
    "FaultSpec",
    "RecordingSpec",
    "corpus_from_data",
    "fault_from_dict",
    "fault_to_dict",
    "int_field",
    "recording_from_dict",
]


CODECS = ("opus", "pcm")
RECORDING_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# The fixtures are 15 s of audio; shorter Opus segments are cut from them, longer
# ones cannot be made without re-encoding.
MAX_OPUS_SEGMENT_SECONDS = 15
MAX_SEGMENT_SECONDS = 3600
MAX_SEGMENTS = 1000


@dataclass(frozen=True, slots=True)
class RecordingSpec:
    id: str
    segments: int
    segment_seconds: int = 15
    codecs: tuple[str, ...] = CODECS
    max_segments: int = 3
    enforce_max_segments: int | None = None
    max_duration: int = 180
    faults: tuple[FaultSpec, ...] = ()

    @property
    def segment_limit(self) -> int:
        """The per-request segment count the server really enforces."""
        if self.enforce_max_segments is None:
            return self.max_segments
        return self.enforce_max_segments

    @property
    def duration_seconds(self) -> int:
        return self.segments * self.segment_seconds

    @property
    def offsets(self) -> tuple[int, ...]:
        return tuple(i * self.segment_seconds for i in range(self.segments))

    def to_dict(self) -> dict[str, Any]:
        """The spec in the same shape :func:`recording_from_dict` accepts."""
        out: dict[str, Any] = {
            "id": self.id,
            "segments": self.segments,
            "segment_seconds": self.segment_seconds,
            "codecs": list(self.codecs),
            "max_segments": self.max_segments,
            "max_duration": self.max_duration,
            "faults": [fault_to_dict(f) for f in self.faults],
        }
        if self.enforce_max_segments is not None:
            out["enforce_max_segments"] = self.enforce_max_segments
        return out


RECORDING_KEYS = frozenset(
    {
        "id",
        "segments",
        "segment_seconds",
        "codecs",
        "max_segments",
        "enforce_max_segments",
        "max_duration",
        "faults",
    }
)


def recording_from_dict(raw: Any) -> RecordingSpec:
    """Validate one recording table/object (the ``[[recording]]`` shape)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"a recording must be a table/object, got {type(raw).__name__}")
    rid = raw.get("id")
    if not isinstance(rid, str) or not RECORDING_ID_RE.fullmatch(rid):
        raise ValueError(f"recording id {rid!r} must match {RECORDING_ID_RE.pattern}")
    unknown = sorted(set(raw) - RECORDING_KEYS)
    if unknown:
        raise ValueError(f"{rid}: unknown key {unknown[0]!r}")
    if "segments" not in raw:
        raise ValueError(f"{rid}: segments (a count) is required")
    segments = int_field(rid, "segments", raw["segments"], minimum=1, maximum=MAX_SEGMENTS)
    codecs_raw = raw.get("codecs", list(CODECS))
    if (
        not isinstance(codecs_raw, list)
        or not codecs_raw
        or any(c not in CODECS for c in codecs_raw)
        or len(set(codecs_raw)) != len(codecs_raw)
    ):
        raise ValueError(f"{rid}: codecs must be a non-empty list drawn from {list(CODECS)}")
    codecs = tuple(codecs_raw)
    seconds_cap = MAX_OPUS_SEGMENT_SECONDS if "opus" in codecs else MAX_SEGMENT_SECONDS
    seconds = int_field(
        rid, "segment_seconds", raw.get("segment_seconds", 15), minimum=1, maximum=seconds_cap
    )
    max_segments = int_field(rid, "max_segments", raw.get("max_segments", 3), minimum=1)
    enforce = raw.get("enforce_max_segments")
    if enforce is not None:
        enforce = int_field(rid, "enforce_max_segments", enforce, minimum=1)
    max_duration = int_field(rid, "max_duration", raw.get("max_duration", 180), minimum=1)
    faults_raw = raw.get("faults", [])
    if not isinstance(faults_raw, list):
        raise ValueError(f"{rid}: faults must be a list")
    faults = tuple(fault_from_dict(f"{rid}: fault {i + 1}", f) for i, f in enumerate(faults_raw))
    return RecordingSpec(
        id=rid,
        segments=segments,
        segment_seconds=seconds,
        codecs=codecs,
        max_segments=max_segments,
        enforce_max_segments=enforce,
        max_duration=max_duration,
        faults=faults,
    )


def corpus_from_data(data: Any) -> list[RecordingSpec]:
    """A corpus from parsed TOML/JSON: ``{"recording": [...]}`` or (JSON) a bare list."""
    if isinstance(data, Mapping):
        # [playback] and [genesys] belong to the other platforms' simulators
        # (platform_spec); a corpus file may describe all three.
        unknown = sorted(set(data) - {"recording", "playback", "genesys"})
        if unknown:
            raise ValueError(
                f"unknown top-level key {unknown[0]!r} (expected recording, playback, genesys)"
            )
        data = data.get("recording", [])
    if not isinstance(data, list):
        raise ValueError("a corpus is a list of recordings ([[recording]] tables)")
    specs = [recording_from_dict(item) for item in data]
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            raise ValueError(f"{spec.id}: duplicate recording id")
        seen.add(spec.id)
    return specs
