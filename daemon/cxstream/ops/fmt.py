"""How the operations commands show things: sizes, ages, times, tables; and read ``--since``."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from cxstream.journal import JobInfo

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_since(text: str, now: float | None = None) -> float:
    """``30m``, ``2h``, ``7d`` ago, or an ISO 8601 time or date (UTC unless it says).

    Raises ValueError with a message fit for one line on stderr.
    """
    now = time.time() if now is None else now
    match = _RELATIVE.fullmatch(text.strip())
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since: expected a duration (30m, 2h, 7d) or an ISO 8601 time, got {text!r}"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def rfc3339(ts: float | None) -> str | None:
    """The audit trail's own form: UTC, microseconds, ``Z``."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def short_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover - unreachable, for the type checker


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m {seconds % 60:02.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h {seconds % 3600 // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d {seconds % 86400 // 3600:02.0f}h"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def job_bytes(job: JobInfo) -> int | None:
    """What is on disk for this job: the published size, else the checkpoint's."""
    if job.result is not None and isinstance(job.result.get("bytes"), int):
        return int(job.result["bytes"])
    return job.offset


def rate(job: JobInfo) -> float | None:
    """Bytes per second over the current run, between its claim and its last checkpoint."""
    if job.run_started_at is None or job.offset is None or job.run_start_offset is None:
        return None
    elapsed = job.updated_at - job.run_started_at
    return (job.offset - job.run_start_offset) / elapsed if elapsed > 0 else None


def job_json(job: JobInfo) -> dict[str, Any]:
    """A job for scripts: camelCase like the sidecar and the webhook."""
    return {
        "recordingId": job.recording_id,
        "state": job.state.value,
        "attempts": job.attempts,
        "error": job.error,
        "contactId": job.contact_id,
        "codec": job.codec,
        "day": job.day,
        "bytes": job_bytes(job),
        "path": None if job.result is None else job.result.get("path"),
        "createdAt": rfc3339(job.created_at),
        "updatedAt": rfc3339(job.updated_at),
    }
