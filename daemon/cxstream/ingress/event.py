"""The webhook body (contract §2), checked field by field into a JobRequest."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from typing import Any

from cxstream.formats.registry import STREAM_CODECS as CODECS
from cxstream.journal import JobRequest

RECORDING_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
COMPLETED = "recording.completed"
_MAX_OFFSETS = 10_000
_MAX_CONTACT_ID = 256


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


def parse_event(doc: Any, webhook_id: str, received: datetime) -> JobRequest | None:
    """A JobRequest, None for a well-formed event of another type, or EventError."""
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
    recording_id = data.get("recordingId")
    if not isinstance(recording_id, str) or not RECORDING_ID.fullmatch(recording_id):
        raise EventError("data.recordingId is missing or not a valid recording id")
    contact_id = data.get("contactId")
    if contact_id is not None and (
        not isinstance(contact_id, str) or len(contact_id) > _MAX_CONTACT_ID
    ):
        raise EventError("data.contactId must be a string of at most 256 characters")
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
