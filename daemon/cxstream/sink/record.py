"""What a finished recording is: the record behind its sidecar and its announcement."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from cxstream.formats import registry


def final_path(storage_dir: Path, day: str, recording_id: str, codec: str) -> Path:
    """``<storage.dir>/YYYY/MM/DD/<recordingId>.<ext>`` (contract §4).

    Built by name, never with ``with_suffix``: recording ids may hold dots.
    """
    return storage_dir / day / f"{recording_id}.{registry.get(codec).extension}"


def sidecar_path(final: Path, recording_id: str) -> Path:
    return final.with_name(f"{recording_id}.json")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Archived:
    """What a finished job hands to the journal, the sidecar and the notifier."""

    recording_id: str
    contact_id: str | None
    codec: str
    path: str  # a file's path, or s3://<bucket>/<key>
    size: int
    sha256: str
    source_sha256: str
    segments: list[dict[str, int]]
    duration_s: float | None
    verified_by: tuple[str, ...]
    extra: dict[str, Any]
    attempts: int
    ttfb_ms: float | None
    duration_ms: float
    started_at: float
    completed_at: float

    def sidecar(self) -> dict[str, Any]:
        return {
            "recordingId": self.recording_id,
            "contactId": self.contact_id,
            "codec": self.codec,
            "contentType": registry.get(self.codec).content_type,
            "path": self.path,
            "bytes": self.size,
            "sha256": self.sha256,
            "sourceSha256": self.source_sha256,
            "segments": self.segments,
            "durationSeconds": self.duration_s,
            "verified_by": list(self.verified_by),
            "attempts": self.attempts,
            "ttfb_ms": None if self.ttfb_ms is None else round(self.ttfb_ms, 1),
            "duration_ms": round(self.duration_ms, 1),
            "startedAt": _iso(self.started_at),
            "completedAt": _iso(self.completed_at),
            **self.extra,
        }

    def announcement(self) -> bytes:
        return orjson.dumps(
            {
                "type": "recording.archived",
                "timestamp": _iso(self.completed_at),
                "data": {
                    "recordingId": self.recording_id,
                    "contactId": self.contact_id,
                    "path": self.path,
                    "bytes": self.size,
                    "sha256": self.sha256,
                    "codec": self.codec,
                    "contentType": registry.get(self.codec).content_type,
                    "durationSeconds": self.duration_s,
                },
            }
        )
