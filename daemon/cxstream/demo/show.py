"""What the demo shows: one row per recording job, drawn from the daemon's audit trail.

On a terminal the table is redrawn in place; anywhere else (CI, a pipe) each
change is one line, so the output reads as a log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

SETTLED = ("archived", "FAILED", "REJECTED")


@dataclass
class Row:
    name: str  # the job's name: the recording id, or the contact's for a contact job
    state: str = "sent"
    codec: str = ""
    bytes: int = 0
    rate: float = 0.0
    ttfb_ms: float | None = None
    attempts: int = 0
    path: str = ""
    verified: bool = False
    note: str = ""
    node: str = ""  # the node that streamed it, when several ran (demo --nodes)


class AuditTail:
    """Reads the daemon's NDJSON audit file as it grows."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._pos = 0
        self._partial = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with self._path.open("rb") as fh:
                fh.seek(self._pos)
                data = fh.read()
        except FileNotFoundError:
            return []
        self._pos += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        return [orjson.loads(line) for line in lines if line.strip()]


class Board:
    """The rows, in the order the jobs appeared (a fanned-out job right after its contact's)."""

    def __init__(self, names: list[str], width: int) -> None:
        self.rows = {name: Row(name) for name in names}
        self.width = max(width, 10)
        self._last_child: dict[str, str] = {}  # a contact's children stay in listed order

    def get(self, name: str) -> Row | None:
        return self.rows.get(name)

    def settled(self) -> bool:
        return all(r.state in SETTLED for r in self.rows.values())

    def _add_after(self, parent: str, children: list[str]) -> None:
        new = [c for c in children if c not in self.rows]
        if not new:
            return
        anchor = self._last_child.get(parent, parent)
        if anchor not in self.rows:
            anchor = parent
        rows: dict[str, Row] = {}
        for name, row in self.rows.items():
            rows[name] = row
            if name == anchor:
                rows.update((c, Row(c, state="queued")) for c in new)
        self.rows = rows
        self._last_child[parent] = new[-1]

    def apply(self, event: dict[str, Any]) -> list[Row]:
        """Take one audit line; the rows it changed."""
        name, kind = str(event.get("recording_id")), event["event"]
        row = self.rows.get(name)
        if row is None:
            return []
        if kind == "job.enqueued":
            self._add_after(name, [str(event["job"])])
            child = self.rows.get(str(event["job"]))
            return [child] if child else []
        if kind == "recording.expanded":
            # A contact whose recordings each became a job: the contact is no row of its own.
            jobs = [str(j) for j in event["jobs"]]
            self._add_after(name, jobs)
            del self.rows[name]
            return [Row(name, state="expanded", note=f"→ {len(jobs)} recording job(s)")]
        before = (row.state, row.note)
        _apply(row, kind, event)
        return [row] if (row.state, row.note) != before else []

    def render(self, title: str, elapsed: float) -> str:
        w = self.width
        nodes = any(r.node for r in self.rows.values())  # a column only when several ran
        head = (
            f"{'recording':<{w}} {'state':<11} {'node    ' if nodes else ''}{'codec':<5} "
            f"{'bytes':>10} {'rate':>11} {'ttfb':>8} {'tries':>5}  note"
        )
        lines = [f"{title} — {elapsed:5.1f}s", head]
        for r in self.rows.values():
            ttfb = "" if r.ttfb_ms is None else f"{r.ttfb_ms:.0f}ms"
            rate = f"{r.rate / 1e6:.2f} MB/s" if r.rate else ""
            node = f"{r.node:<7} " if nodes else ""
            lines.append(
                f"{r.name:<{w}} {r.state:<11} {node}{r.codec:<5} {r.bytes:>10,} {rate:>11} "
                f"{ttfb:>8} {r.attempts or '':>5}  {r.note}"
            )
        return "\n".join(lines)

    def line(self, row: Row, event: dict[str, Any], wall_start: float) -> str:
        """One progress line (not a terminal), timed by the audit line."""
        at = datetime.fromisoformat(event["ts"].replace("Z", "+00:00"))
        elapsed = at.timestamp() - wall_start
        node = f"{event['node']:<7} " if "node" in event else ""  # which node wrote it
        return (
            f"{elapsed:6.2f}s {row.name:<{self.width}} {row.state:<10} "
            f"{node}{row.bytes:>9,} B  {row.note}"
        )


def _apply(row: Row, kind: str, event: dict[str, Any]) -> None:
    if kind in ("recording.started", "recording.completed") and "node" in event:
        row.node = event["node"]
    # With several nodes, one node's "accepted" may be read after another's "completed".
    if kind == "webhook.accepted" and row.state == "sent":
        row.state = "queued"
    elif kind == "recording.started":
        row.state, row.codec, row.note = "streaming", event["codec"], ""
    elif kind == "stream.stalled":
        row.note = "stalled → resume"
    elif kind == "stream.retry":
        row.note = f"retry: {event.get('error')}"
    elif kind == "recording.codec_fallback":
        row.note = f"{event.get('codec')} unavailable → {event.get('next_codec')}"
    elif kind == "recording.completed":
        row.state, row.bytes, row.codec = "archived", event["bytes"], event["codec"]
        row.ttfb_ms, row.attempts, row.path = event["ttfb_ms"], event["attempts"], event["path"]
        row.rate = event["bytes"] / max(event["duration_ms"] / 1000, 1e-3)
        row.note = ""
    elif kind == "recording.failed":
        row.state, row.note, row.attempts = "FAILED", event["error"], event["attempts"]


class Frame:
    """A block of lines redrawn in place on a terminal.

    It moves the cursor back over its own last drawing only, rather than
    clearing the screen, so what was printed above it (an earlier
    platform's summary) stays.
    """

    def __init__(self) -> None:
        self._lines = 0

    def erase(self) -> str:
        out = f"\x1b[{self._lines}F\x1b[J" if self._lines else ""
        self._lines = 0
        return out

    def draw(self, text: str) -> str:
        out = self.erase() + text + "\n"
        self._lines = text.count("\n") + 1
        return out
