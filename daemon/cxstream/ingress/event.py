"""The webhook body (contract §2, §8), checked field by field into a JobRequest.

``cxone-stream`` names a recording by ``recordingId`` (§2, unchanged). The
other sources (§8) require ``contactId`` and name the job by ``recordingId``
when given, else by ``contactId``; an id that is not a safe file name is
mapped to one (``safe_name``) and kept as ``original_name``.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from datetime import UTC, datetime
from typing import Any

from cxstream.formats.registry import STREAM_CODECS as CODECS
from cxstream.journal import JobRequest

RECORDING_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
COMPLETED = "recording.completed"
STREAM = "cxone-stream"
_MAX_OFFSETS = 10_000
_MAX_CONTACT_ID = 256
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_HASH_CHARS = 16  # 64 bits of sha256: distinct ids keep distinct names


class EventError(ValueError):
    """The body is JSON but not a valid event; the message is the 400's reason."""


def _day(timestamp: Any, received: datetime) -> str:
    """The folder a recording is filed under: the event's date, else the receipt's."""
    when = received
    if isinstance(timestamp, str):
        try:
            parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
            when = parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except (ValueError, OverflowError):
            # OverflowError: an offset that moves year 1 or 9999 out of range
            # ("0001-01-01T00:00:00+14:00"); the receipt date is as good a folder.
            pass
    # Not strftime: glibc's %Y does not zero-pad years before 1000, and the folder is YYYY.
    return f"{when.year:04d}/{when.month:02d}/{when.day:02d}"


def _offsets(raw: Any) -> tuple[int, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        raise EventError("data.offsets must be a non-empty list of integers")
    if len(raw) > _MAX_OFFSETS:
        raise EventError(f"data.offsets lists more than {_MAX_OFFSETS} segments")
    for value in raw:
        # bool is an int in Python, and JSON true is not an offset.
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise EventError("data.offsets must hold non-negative integers")
    if any(b <= a for a, b in itertools.pairwise(raw)):
        raise EventError("data.offsets must be strictly increasing")
    return tuple(raw)


def safe_name(raw: str) -> tuple[str, str | None]:
    """A job name for a platform id: the id itself when safe, else a mapped one.

    Unsafe characters become ``_``, a leading ``.``/``_``/``-`` goes, and a
    short hash of the original is appended, so two ids that clean up alike
    still get two names (and two files). Returns (name, original or None).
    """
    if RECORDING_ID.fullmatch(raw):
        return raw, None
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    cleaned = _UNSAFE.sub("_", raw).lstrip("._-") or "id"
    return f"{cleaned[: 127 - _HASH_CHARS]}-{digest}", raw


def _platform_id(value: Any, field: str, *, integer: bool) -> str:
    """A contact or recording id of §8: a JSON string (or integer), kept as a string."""
    if integer and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or len(value) > _MAX_CONTACT_ID:
        kind = "a string or an integer" if integer else "a string"
        raise EventError(f"data.{field} must be {kind} of 1 to {_MAX_CONTACT_ID} characters")
    if not value.isprintable():
        raise EventError(f"data.{field} must not contain control characters")
    return value


def _contact_job(data: dict[str, Any], webhook_id: str | None, day: str, source: str) -> JobRequest:
    """§8's body: contactId required, recordingId optional; no codec or offsets."""
    if data.get("contactId") is None:
        raise EventError("data.contactId is required")
    contact_id = _platform_id(data["contactId"], "contactId", integer=True)
    raw_recording = data.get("recordingId")
    recording = None
    if raw_recording is not None:
        recording = _platform_id(raw_recording, "recordingId", integer=False)
    # These are the stream API's (§1) words; another platform would ignore
    # them silently, and a caller should learn that at once.
    for field in ("codec", "offsets"):
        if data.get(field) is not None:
            raise EventError(f"data.{field} is for source.kind {STREAM} only")
    name, original = safe_name(recording if recording is not None else contact_id)
    # cxone-playback has no recording id in its API: it always looks the
    # contact up (a given recordingId only names the job). Genesys fetches the
    # one recording when named, else every recording of the conversation.
    one = source != "cxone-playback" and recording is not None
    return JobRequest(
        webhook_id=webhook_id,
        recording_id=name,
        contact_id=contact_id,
        codec=None,
        offsets=None,
        day=day,
        original_name=original,
        scope="recording" if one else "contact",
    )


def parse_event(
    doc: Any, webhook_id: str | None, received: datetime, source: str = STREAM
) -> JobRequest | None:
    """A JobRequest, None for a well-formed event of another type, or EventError.

    ``source`` is ``source.kind``; ``webhook_id`` is None for an unsigned webhook.
    """
    if not isinstance(doc, dict):
        raise EventError("body must be a JSON object")
    kind = doc.get("type")
    if not isinstance(kind, str):
        raise EventError("type must be a string")
    if kind != COMPLETED:
        return None
    data = doc.get("data")
    if not isinstance(data, dict):
        raise EventError("data must be an object")
    if source != STREAM:
        return _contact_job(data, webhook_id, _day(doc.get("timestamp"), received), source)
    recording_id = data.get("recordingId")
    if not isinstance(recording_id, str) or not RECORDING_ID.fullmatch(recording_id):
        raise EventError("data.recordingId is missing or not a valid recording id")
    contact_id = data.get("contactId")
    if contact_id is not None and (
        not isinstance(contact_id, str) or len(contact_id) > _MAX_CONTACT_ID
    ):
        raise EventError("data.contactId must be a string of at most 256 characters")
    if contact_id is not None and not contact_id.isprintable():
        # As for §8's ids: it reaches the journal, the sidecar and audit lines.
        raise EventError("data.contactId must not contain control characters")
    codec = data.get("codec")
    if codec is not None and codec not in CODECS:
        raise EventError("data.codec must be 'opus' or 'pcm'")
    return JobRequest(
        webhook_id=webhook_id,
        recording_id=recording_id,
        contact_id=contact_id,
        codec=codec,
        offsets=_offsets(data.get("offsets")),
        day=_day(doc.get("timestamp"), received),
    )
