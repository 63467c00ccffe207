"""One platform's demo: its simulator here, the real daemon as a child, then the checks.

The daemon gets a temporary configuration (its audit trail in a file), the
scenario sends one webhook per job the way that platform would, the board
follows the audit trail until every job settled and every archived
recording was announced, and then each file is checked independently of
the daemon: the bytes against what the simulator serves, the sidecar, the
archive announcement.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson

from cxstream.demo.show import AuditTail, Board, Frame, Row
from cxstream.sim.server import DEFAULT_ARCHIVE_SECRET
from cxstream.sim.state import Announcement
from cxstream.sink.record import sidecar_path

TIMEOUT_S = 120.0


class Scenario(Protocol):
    """What differs between platforms; ``runner`` does the rest."""

    platform: str
    title: str
    jobs: list[str]  # the job each webhook names, in the order sent
    expected: list[str]  # every recording job that must end verified

    @property
    def archive_url(self) -> str: ...
    @property
    def announcements(self) -> list[Announcement]: ...
    def config(self) -> str:
        """The platform's TOML sections ([source], [webhook], [cxone] / [genesys])."""

    async def send(self, http: aiohttp.ClientSession, url: str, board: Board) -> None:
        """One webhook per job, as the platform would send it."""

    def served(self, row: Row) -> int | None:
        """Bytes the simulator has served for a streaming row so far (None: unknown)."""

    def check_bytes(self, row: Row, data: bytes) -> str | None:
        """A problem with the archived file's bytes, or None when they are the source's."""


@dataclass(frozen=True, slots=True)
class Outcome:
    verified: int
    expected: int
    daemon_status: int | None
    unexpected: int = 0  # rows for no recording the platform has (a failed contact job)

    @property
    def ok(self) -> bool:
        return self.verified == self.expected and not self.unexpected and self.daemon_status == 0


def daemon_config(tmp: Path, archive_url: str) -> str:
    """What every platform's demo shares: fast retries, files and audit in ``tmp``."""
    return f"""
[streams]
concurrency = 4
idle_timeout_s = 2
max_attempts = 10
backoff_base_s = 0.2
backoff_cap_s = 2
[storage]
dir = "{tmp / "recordings"}"
state_dir = "{tmp / "state"}"
[archive]
url = "{archive_url}"
secret = "{DEFAULT_ARCHIVE_SECRET}"
[audit]
path = "{tmp / "audit.ndjson"}"
[admin]
listen = "127.0.0.1:0"
"""


async def _webhook_url(tail: AuditTail, proc: asyncio.subprocess.Process) -> str | None:
    """The daemon's bound webhook URL, or None if it exited before it said."""
    while True:
        for event in tail.read():
            if event["event"] == "daemon.started":
                return f"http://{event['webhook']}/webhooks/cxone"
        if proc.returncode is not None:
            return None
        await asyncio.sleep(0.05)


def _announced(announcements: Sequence[Announcement]) -> dict[str, Any]:
    return {str(a.payload["data"]["recordingId"]): a.payload["data"] for a in announcements}


async def _follow(sc: Scenario, board: Board, tail: AuditTail, tty: bool, started: float) -> None:
    """Show progress until every job settled and each archived one was announced."""
    wall_start = time.time() - (time.monotonic() - started)
    deadline = started + TIMEOUT_S
    frame = Frame()
    while time.monotonic() < deadline:
        for event in tail.read():
            for row in board.apply(event):
                if not tty:
                    print(board.line(row, event, wall_start), flush=True)
        for row in board.rows.values():
            if row.state == "streaming":
                served = sc.served(row)
                if served is not None:
                    row.bytes = served
                    row.rate = served / max(time.monotonic() - started, 1e-3)
        if tty:
            live = board.render(sc.title, time.monotonic() - started)
            print(frame.draw(live), end="", flush=True)
        announced = _announced(sc.announcements)
        if board.settled() and all(
            r.name in announced for r in board.rows.values() if r.state == "archived"
        ):
            break
        await asyncio.sleep(0.25)
    # The summary takes the live table's place.
    print(frame.erase(), end="", flush=True)


def verify(sc: Scenario, row: Row, announced: dict[str, Any]) -> None:
    """The file, its sidecar and its announcement, each checked without the daemon's word."""
    if row.state != "archived":
        return
    path = Path(row.path)
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    problems = []
    wrong = sc.check_bytes(row, data)
    if wrong:
        problems.append(wrong)
    try:
        sidecar = orjson.loads(sidecar_path(path, row.name).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        problems.append("no sidecar")
    else:
        if sidecar.get("sha256") != sha:
            problems.append("sidecar sha256 is not the file's")
        if not isinstance(sidecar.get("verified_by"), list) or not sidecar["verified_by"]:
            problems.append("sidecar says nothing verified it")
    announcement = announced.get(row.name)
    if announcement is None:
        problems.append("not announced")
    elif announcement.get("sha256") != sha:
        problems.append("announced with another sha256")
    row.verified = not problems
    row.state = "verified" if row.verified else "BAD"
    row.note = "; ".join(problems)


async def run(sc: Scenario, tmp: Path) -> Outcome:
    tty = sys.stdout.isatty()
    width = max(len(n) for n in [*sc.jobs, *sc.expected])
    board = Board(list(sc.jobs), width)
    config = tmp / "cxstream.toml"
    config.write_text(daemon_config(tmp, sc.archive_url) + sc.config())
    async with aiohttp.ClientSession() as http:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cxstream",
            "run",
            "--config",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
        )
        tail = AuditTail(tmp / "audit.ndjson")
        started = time.monotonic()
        try:
            webhook_url = await _webhook_url(tail, proc)
            if webhook_url is None:
                print("cxstream demo: the daemon did not start", file=sys.stderr)
                return Outcome(0, len(sc.expected), proc.returncode)
            await sc.send(http, webhook_url, board)
            await _follow(sc, board, tail, tty, started)
        finally:
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()
    announced = _announced(sc.announcements)
    for name in sc.expected:
        if board.get(name) is None:
            # The platform lists it, yet no job ever named it.
            board.rows[name] = Row(name, state="MISSING", note="no job for it")
    for row in board.rows.values():
        verify(sc, row, announced)
    print(board.render(sc.title, time.monotonic() - started))
    rows = [board.rows[n] for n in sc.expected if n in board.rows]
    verified = sum(r.verified for r in rows)
    total = sum(r.bytes for r in rows)
    unexpected = sum(1 for n in board.rows if n not in sc.expected)
    extra = f", {unexpected} other job(s) not archived" if unexpected else ""
    print(
        f"\n{verified}/{len(sc.expected)} recordings verified, "
        f"{total:,} bytes{extra}; daemon exit status {proc.returncode}"
    )
    return Outcome(verified, len(sc.expected), proc.returncode, unexpected)
