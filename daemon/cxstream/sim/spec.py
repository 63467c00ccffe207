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

Each fault selects requests with ``on = [1, 3]`` (1-based request numbers),
``times = N`` (the first N) or neither (all). Stream faults count every
stream request of the recording, including 401s, rejected ones and resumes;
``metadata_status`` counts metadata requests. Kinds and their parameters:

- ``stall {after_bytes}``: send that many body bytes, then nothing, connection open.
- ``truncate {after_bytes}``: send that many, then close mid-chunk.
- ``trickle {bytes_per_second}``: send the body slowly.
- ``bad_digest``: an intact body under a wrong (well-formed) ``Repr-Digest``.
- ``corrupt {at_byte}``: one byte flipped; ``Repr-Digest`` still of the true body.
- ``rot {at_byte}``: one byte flipped (inside an Ogg page body for Opus) and a
  ``Repr-Digest`` of the rotten body: only Ogg CRCs or the metadata sha256 tell.
- ``missing_eos``: Opus links without EOS flags (CRCs fixed, digest of that body).
- ``ignore_range``: a request with ``Range`` gets the full 200.
- ``status {status = 429|503, retry_after}``: the JSON error with ``Retry-After``.
- ``json200``: 200, ``application/json``, ``{"error": "storage_timeout"}``.
- ``expire_token``: revoke the request's token and answer 401 ``invalid_token``.
- ``codec_unavailable``: 406 for the requested codec although the metadata lists it
  (a codec withdrawn between the metadata GET and the stream GET).
- ``metadata_status {status, retry_after}``: the same, for the metadata GET.

``after_bytes`` counts bytes of the response being sent (after a Range
offset); ``at_byte`` is a position in the complete 200 body. Defaults:
after_bytes 30000, at_byte 4096, bytes_per_second 16000, status 503,
retry_after 1. When several faults select one request, expire_token wins over
status, status over validation errors, json200 over audio; body faults
combine, and of stall and truncate the one with the smaller after_bytes acts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CODECS = ("opus", "pcm")
RECORDING_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# The fixtures are 15 s of audio; shorter Opus segments are cut from them, longer
# ones cannot be made without re-encoding.
MAX_OPUS_SEGMENT_SECONDS = 15
MAX_SEGMENT_SECONDS = 3600
MAX_SEGMENTS = 1000

# Which parameters each fault kind takes; everything else is rejected so that a
# typo in a corpus file fails loudly instead of silently meaning "default".
FAULT_PARAMS: dict[str, frozenset[str]] = {
    "stall": frozenset({"after_bytes"}),
    "truncate": frozenset({"after_bytes"}),
    "bad_digest": frozenset(),
    "corrupt": frozenset({"at_byte"}),
    "rot": frozenset({"at_byte"}),
    "missing_eos": frozenset(),
    "ignore_range": frozenset(),
    "trickle": frozenset({"bytes_per_second"}),
    "status": frozenset({"status", "retry_after"}),
    "json200": frozenset(),
    "expire_token": frozenset(),
    "codec_unavailable": frozenset(),
    "metadata_status": frozenset({"status", "retry_after"}),
}
METADATA_FAULTS = frozenset({"metadata_status"})
SELECTORS = frozenset({"on", "times"})
RETRYABLE_STATUSES = (429, 503)
DEFAULT_STATUS = 503


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One fault and the requests it applies to.

    ``on`` lists 1-based request numbers, ``times`` means "the first N requests",
    neither means every request. Stream faults count stream requests of the
    recording (resumes and rejected ones included); ``metadata_status`` counts
    metadata requests.
    """

    kind: str
    on: tuple[int, ...] = ()
    times: int | None = None
    after_bytes: int = 30_000
    at_byte: int = 4096
    bytes_per_second: int = 16_000
    status: int = DEFAULT_STATUS
    retry_after: int = 1
    # Media-host faults (``platform_spec``): bytes of junk after the body.
    junk_bytes: int = 64

    def applies(self, request_number: int) -> bool:
        if self.on:
            return request_number in self.on
        if self.times is not None:
            return request_number <= self.times
        return True

    @property
    def for_metadata(self) -> bool:
        return self.kind in METADATA_FAULTS


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


def fault_to_dict(
    fault: FaultSpec, params: Mapping[str, frozenset[str]] = FAULT_PARAMS
) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": fault.kind}
    if fault.on:
        out["on"] = list(fault.on)
    if fault.times is not None:
        out["times"] = fault.times
    for name in sorted(params[fault.kind]):
        out[name] = getattr(fault, name)
    return out


def int_field(where: str, key: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    # bool is an int subclass; `true` in a TOML file is never a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: {key} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{where}: {key} must be {bound}, got {value}")
    return value


def _fault_values(
    where: str,
    raw: Mapping[str, Any],
    kind: str,
    params: Mapping[str, frozenset[str]],
    statuses: tuple[int, ...],
) -> dict[str, Any]:
    """The validated selector and parameter values of one fault table."""
    values: dict[str, Any] = {}
    if "on" in raw:
        on = raw["on"]
        if not isinstance(on, list) or not on:
            raise ValueError(f"{where}: on must be a non-empty list of request numbers")
        values["on"] = tuple(sorted({int_field(where, "on", n, minimum=1) for n in on}))
    for key in ("times", "after_bytes", "at_byte", "retry_after"):
        if key in raw:
            values[key] = int_field(where, key, raw[key], minimum=0)
    for key in ("bytes_per_second", "junk_bytes"):
        if key in raw:
            values[key] = int_field(where, key, raw[key], minimum=1)
    if "status" in raw:
        status = int_field(where, "status", raw["status"], minimum=0)
        if status not in statuses:
            allowed_statuses = " or ".join(map(str, statuses))
            raise ValueError(f"{where}: status must be {allowed_statuses}, got {status}")
        values["status"] = status
    elif "status" in params[kind] and DEFAULT_STATUS not in statuses:
        values["status"] = statuses[0]
    return values


def fault_from_dict(
    where: str,
    raw: Any,
    params: Mapping[str, frozenset[str]] = FAULT_PARAMS,
    statuses: tuple[int, ...] = RETRYABLE_STATUSES,
) -> FaultSpec:
    """One fault of the kinds in ``params`` (the stream API's by default)."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: a fault must be a table/object, got {raw!r}")
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in params:
        raise ValueError(f"{where}: unknown fault kind {kind!r} (one of {', '.join(params)})")
    where = f"{where} ({kind})"
    allowed = params[kind] | SELECTORS | {"kind"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}")
    if "on" in raw and "times" in raw:
        raise ValueError(f"{where}: give either 'on' or 'times', not both")
    return FaultSpec(kind=kind, **_fault_values(where, raw, kind, params, statuses))


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
