"""``cxstream audit-report FILE [--json]``: the audit trail summed up per UTC hour.

The file is read one line at a time, so a month of audit costs the memory of
its hourly counters plus the TTFB samples the percentiles need. A line that is
not a JSON object with a parseable ``ts`` and a string ``event`` is counted as
skipped, never fatal: a trail cut mid-line by a crash must still be readable.

Percentiles are nearest-rank (the smallest sample with at least p% of the
samples at or below it), so every figure reported is a TTFB that was measured.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import orjson

PROG = "cxstream audit-report"
PERCENTILES = (50, 95, 99)
COLUMNS = (
    "hour",
    "completed",
    "failed",
    "success_rate",
    "ttfb_p50_ms",
    "ttfb_p95_ms",
    "ttfb_p99_ms",
    "bytes",
    "stalls",
    "retries",
)


@dataclass(slots=True)
class Bucket:
    """The counters of one hour (or of the whole file, for the total row)."""

    completed: int = 0
    failed: int = 0
    bytes: int = 0
    stalls: int = 0
    retries: int = 0
    ttfb_ms: list[float] = field(default_factory=list)

    def count(self, event: str, line: dict[str, Any]) -> None:
        if event == "recording.completed":
            self.completed += 1
            size = line.get("bytes")
            if isinstance(size, int) and _is_number(size):
                self.bytes += size
            ttfb = line.get("ttfb_ms")
            # null is legitimate (a run that streamed nothing); it has no latency to rank.
            if isinstance(ttfb, int | float) and _is_number(ttfb):
                self.ttfb_ms.append(float(ttfb))
        elif event == "recording.failed":
            self.failed += 1
        elif event == "stream.stalled":
            self.stalls += 1
        elif event == "stream.retry":
            self.retries += 1

    def merge(self, other: Bucket) -> None:
        self.completed += other.completed
        self.failed += other.failed
        self.bytes += other.bytes
        self.stalls += other.stalls
        self.retries += other.retries
        self.ttfb_ms.extend(other.ttfb_ms)

    def summary(self) -> dict[str, Any]:
        finished = self.completed + self.failed
        samples = sorted(self.ttfb_ms)
        row: dict[str, Any] = {
            "completed": self.completed,
            "failed": self.failed,
            "success_rate": self.completed / finished if finished else None,
        }
        for p in PERCENTILES:
            row[f"ttfb_p{p}_ms"] = percentile(samples, p)
        row.update(bytes=self.bytes, stalls=self.stalls, retries=self.retries)
        return row


@dataclass(slots=True)
class Report:
    hours: dict[datetime, Bucket] = field(default_factory=dict)
    skipped: int = 0
    first_skipped: int | None = None

    def total(self) -> Bucket:
        total = Bucket()
        for bucket in self.hours.values():
            total.merge(bucket)
        return total

    def as_dict(self) -> dict[str, Any]:
        return {
            "hours": [
                {"hour": hour_label(hour), **self.hours[hour].summary()}
                for hour in sorted(self.hours)
            ],
            "total": self.total().summary(),
            "skipped": self.skipped,
        }


def _is_number(value: Any) -> bool:
    # bool is an int to Python but never a count or a latency in the trail.
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def percentile(samples: Sequence[float], p: int) -> float | None:
    """Nearest-rank percentile of ascending ``samples``; None when there are none."""
    if not samples:
        return None
    # ceil(p * n / 100) in integers: 0.07 * 100 is 7.000000000000001 in floats.
    rank = max(1, -(-p * len(samples) // 100))
    return samples[rank - 1]


def parse_ts(value: Any) -> datetime | None:
    """The instant of an RFC 3339 ``ts`` in UTC; None for anything without an offset."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        # A wall-clock time with no offset could be any hour; guessing would misfile it.
        return None
    try:
        return when.astimezone(UTC)
    except OverflowError:
        # "0001-01-01T00:00:00+14:00" is well-formed yet has no UTC hour to file under.
        return None


def hour_label(hour: datetime) -> str:
    # isoformat, not strftime: glibc's %Y does not zero-pad years before 1000.
    return hour.replace(tzinfo=None).isoformat() + "Z"


def _entry(raw: bytes) -> tuple[datetime, str, dict[str, Any]] | None:
    """The hour, event name and fields of one audit line; None for anything else."""
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(line, dict):
        return None
    when, event = parse_ts(line.get("ts")), line.get("event")
    if when is None or not isinstance(event, str):
        return None
    return when.replace(minute=0, second=0, microsecond=0), event, line


def summarise(lines: Iterable[bytes]) -> Report:
    """Count ``lines`` (NDJSON, one audit line each) into hourly buckets."""
    report = Report()
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            # A blank line carries nothing; a trailing newline is not a defect.
            continue
        entry = _entry(raw)
        if entry is None:
            report.skipped += 1
            if report.first_skipped is None:
                report.first_skipped = number
            continue
        hour, event, line = entry
        bucket = report.hours.get(hour)
        if bucket is None:
            bucket = report.hours[hour] = Bucket()
        bucket.count(event, line)
    return report


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "success_rate":
        return f"{value * 100:.1f}%"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def render_table(report: Report) -> str:
    doc = report.as_dict()
    rows = [*doc["hours"], {"hour": "total", **doc["total"]}]
    cells = [list(COLUMNS)]
    for row in rows:
        cells.append([_cell(key, row[key]) for key in COLUMNS])
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    out = []
    for line in cells:
        # The hour label reads left to right; every other column is a number.
        parts = [line[0].ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(line[1:], widths[1:], strict=True)]
        out.append("  ".join(parts))
    return "\n".join(out) + "\n"


def _open(path: str) -> IO[bytes]:
    if path == "-":
        return sys.stdin.buffer
    return open(path, "rb")


def main(path: str, *, as_json: bool = False) -> int:
    try:
        source = _open(path)
    except OSError as exc:
        print(f"{PROG}: cannot open {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        report = summarise(source)
    except OSError as exc:
        print(f"{PROG}: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    finally:
        if source is not sys.stdin.buffer:
            source.close()
    if report.skipped:
        print(
            f"{PROG}: skipped {report.skipped} line(s) without JSON, ts or event "
            f"(first: line {report.first_skipped})",
            file=sys.stderr,
        )
    if as_json:
        text = orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        text = render_table(report)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # `... | head` closed the pipe: not an error worth a traceback. Point stdout
        # at /dev/null so the interpreter's own flush at exit does not raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return 0
