"""Fault specifications: how the simulator misbehaves, and for which requests.

Each fault selects requests with ``on = [1, 3]`` (1-based request numbers),
``times = N`` (the first N) or neither (all). Stream faults count every
stream request of the recording, including 401s, rejected ones and resumes;
``metadata_status``, ``huge_metadata`` and ``many_segments`` count metadata
requests. Kinds and their parameters:

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

Hostile answers (a server that is broken or malicious, not just unlucky):

- ``endless {max_bytes}``: after the body, keep sending it over and over (valid
  looking audio) until ``max_bytes`` body bytes in all (0: never ends).
- ``junk_tail {extra_bytes, content_length}``: the good body and ``extra_bytes``
  more of the same under the true body's ``Repr-Digest``; chunked, or with
  ``content_length = true`` an honest ``Content-Length`` of all that is sent.
- ``gzip``: ``Content-Encoding: gzip`` of the body, unasked (``Range`` ignored).
- ``gzip_bomb {inflated_bytes}``: a small gzip body that inflates to that many zeros.
- ``huge_metadata {size_bytes, content_length}``: valid metadata JSON padded
  with whitespace to ``size_bytes`` (counts metadata requests).
- ``many_segments {count}``: metadata listing ``count`` segments (counts
  metadata requests; the stream still serves only the real ones).
- ``huge_error {status, size_bytes, content_length}``: an error JSON
  (``status`` any 4xx/5xx, no ``Retry-After``) padded to ``size_bytes``.
- ``huge_token {size_bytes, content_length}``: like ``expire_token``, and the
  next token request (whoever makes it) is answered with a valid token padded
  to ``size_bytes``.

Every padded body is valid JSON of exactly ``size_bytes`` (whitespace before
the closing brace): a client that read it whole would accept it, so only a
bound on what it reads protects it.

``after_bytes`` counts bytes of the response being sent (after a Range
offset); ``at_byte`` is a position in the complete 200 body. Defaults:
after_bytes 30000, at_byte 4096, bytes_per_second 16000, status 503,
retry_after 1, max_bytes 0, extra_bytes 1 MiB, inflated_bytes 128 MiB,
size_bytes 64 MiB, count 100000, content_length false. When several faults
select one request, expire_token wins over huge_token, that over status, status
over huge_error, huge_error over validation errors, json200 over audio; body
faults combine, of stall and truncate the one with the smaller after_bytes
acts, gzip_bomb replaces the body and gzip compresses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    "endless": frozenset({"max_bytes"}),
    "junk_tail": frozenset({"extra_bytes", "content_length"}),
    "gzip": frozenset(),
    "gzip_bomb": frozenset({"inflated_bytes"}),
    "huge_metadata": frozenset({"size_bytes", "content_length"}),
    "many_segments": frozenset({"count"}),
    "huge_error": frozenset({"status", "size_bytes", "content_length"}),
    "huge_token": frozenset({"size_bytes", "content_length"}),
}
METADATA_FAULTS = frozenset({"metadata_status", "huge_metadata", "many_segments"})
# Upper bounds that keep the simulator itself cheap: a bomb is compressed once,
# a segment list is built in memory.
MAX_INFLATED_BYTES = 4 * 1024**3
MAX_LISTED_SEGMENTS = 2_000_000
SELECTORS = frozenset({"on", "times"})
RETRYABLE_STATUSES = (429, 503)
DEFAULT_STATUS = 503


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One fault and the requests it applies to.

    ``on`` lists 1-based request numbers, ``times`` means "the first N requests",
    neither means every request. Stream faults count stream requests of the
    recording (resumes and rejected ones included); metadata faults
    (``METADATA_FAULTS``) count metadata requests.
    """

    kind: str
    on: tuple[int, ...] = ()
    times: int | None = None
    after_bytes: int = 30_000
    at_byte: int = 4096
    bytes_per_second: int = 16_000
    status: int = DEFAULT_STATUS
    retry_after: int = 1
    max_bytes: int = 0
    extra_bytes: int = 1024 * 1024
    inflated_bytes: int = 128 * 1024 * 1024
    size_bytes: int = 64 * 1024 * 1024
    count: int = 100_000
    content_length: bool = False
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


def check_int(where: str, key: str, value: Any, *, minimum: int, maximum: int | None = None) -> int:
    # bool is an int subclass; `true` in a TOML file is never a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: {key} must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{where}: {key} must be {bound}, got {value}")
    return value


# Integer parameters: (minimum, maximum or None).
_INT_PARAMS: dict[str, tuple[int, int | None]] = {
    "times": (0, None),
    "after_bytes": (0, None),
    "at_byte": (0, None),
    "retry_after": (0, None),
    "bytes_per_second": (1, None),
    "max_bytes": (0, None),
    "extra_bytes": (1, None),
    "inflated_bytes": (1, MAX_INFLATED_BYTES),
    "size_bytes": (0, None),
    "count": (1, MAX_LISTED_SEGMENTS),
    "junk_bytes": (1, None),
}


def _fault_params(
    where: str,
    kind: str,
    raw: Mapping[str, Any],
    params_of: Mapping[str, frozenset[str]],
    statuses: tuple[int, ...],
) -> dict[str, Any]:
    """The validated selector and parameter values of one fault table."""
    params: dict[str, Any] = {}
    if "on" in raw:
        on = raw["on"]
        if not isinstance(on, list) or not on:
            raise ValueError(f"{where}: on must be a non-empty list of request numbers")
        params["on"] = tuple(sorted({check_int(where, "on", n, minimum=1) for n in on}))
    for key, (low, high) in _INT_PARAMS.items():
        if key in raw:
            params[key] = check_int(where, key, raw[key], minimum=low, maximum=high)
    if "content_length" in raw:
        if not isinstance(raw["content_length"], bool):
            raise ValueError(f"{where}: content_length must be true or false")
        params["content_length"] = raw["content_length"]
    if "status" in raw:
        status = check_int(where, "status", raw["status"], minimum=0)
        if kind == "huge_error":
            if not 400 <= status <= 599:
                raise ValueError(f"{where}: status must be in 400..599, got {status}")
        elif status not in statuses:
            allowed = " or ".join(map(str, statuses))
            raise ValueError(f"{where}: status must be {allowed}, got {status}")
        params["status"] = status
    elif "status" in params_of[kind] and DEFAULT_STATUS not in statuses:
        params["status"] = statuses[0]
    return params


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
    return FaultSpec(kind=kind, **_fault_params(where, kind, raw, params, statuses))


# The name the platform simulators use.
int_field = check_int
