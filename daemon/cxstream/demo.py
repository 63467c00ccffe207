"""``cxstream demo``: the main job, end to end, on the built-in simulator.

Starts the simulator in this process and the real daemon as a child (its
audit trail in a file), sends one signed webhook per recording of the
default corpus (a few with faults the daemon rides out), shows progress per
recording, then checks every file independently: byte count and sha256
against the simulator's metadata, sidecar present, announcement received.
Exit 0 only if every recording verified.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import orjson
from standardwebhooks.webhooks import Webhook

from cxstream.sim.corpus import default_corpus
from cxstream.sim.server import (
    DEFAULT_ARCHIVE_SECRET,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    SimServer,
)
from cxstream.sim.spec import RecordingSpec
from cxstream.sink.record import sidecar_path

_DEMO_WEBHOOK_SECRET = "whsec_ZGVtby13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5"
_TIMEOUT_S = 120.0


@dataclass
class Row:
    recording_id: str
    state: str = "sent"
    codec: str = ""
    bytes: int = 0
    rate: float = 0.0
    ttfb_ms: float | None = None
    attempts: int = 0
    path: str = ""
    verified: bool = False
    note: str = ""
    node: str = ""  # the node that streamed it (cluster demo)


def _config(tmp: Path, sim: SimServer) -> Path:
    text = f"""
[webhook]
listen = "127.0.0.1:0"
secret = "{_DEMO_WEBHOOK_SECRET}"
[cxone]
base_url = "{sim.base_url}"
token_url = "{sim.token_url}"
client_id = "{DEFAULT_CLIENT_ID}"
client_secret = "{DEFAULT_CLIENT_SECRET}"
codecs = ["opus", "pcm"]
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
url = "{sim.archive_url}"
secret = "{DEFAULT_ARCHIVE_SECRET}"
[audit]
path = "{tmp / "audit.ndjson"}"
[admin]
listen = "127.0.0.1:0"
"""
    path = tmp / "cxstream.toml"
    path.write_text(text)
    return path


class _AuditTail:
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


def _render(rows: dict[str, Row], elapsed: float, tty: bool) -> str:
    nodes = any(r.node for r in rows.values())  # a column only when several nodes ran
    node_head = f"{'node':<7} " if nodes else ""
    head = (
        f"{'recording':<10} {'state':<11} {node_head}{'codec':<5} {'bytes':>10} {'rate':>11} "
        f"{'ttfb':>8} {'tries':>5}  note"
    )
    lines = [f"cxstream demo — {elapsed:5.1f}s", head]
    for r in rows.values():
        ttfb = "" if r.ttfb_ms is None else f"{r.ttfb_ms:.0f}ms"
        rate = f"{r.rate / 1e6:.2f} MB/s" if r.rate else ""
        node = f"{r.node:<7} " if nodes else ""
        lines.append(
            f"{r.recording_id:<10} {r.state:<11} {node}{r.codec:<5} {r.bytes:>10,} {rate:>11} "
            f"{ttfb:>8} {r.attempts or '':>5}  {r.note}"
        )
    out = "\n".join(lines)
    return f"\x1b[H\x1b[J{out}" if tty else out


def _apply(rows: dict[str, Row], event: dict[str, Any]) -> None:
    row = rows.get(str(event.get("recording_id")))
    if row is None:
        return
    name = event["event"]
    if name in ("recording.started", "recording.completed"):
        row.node = event.get("node", row.node)
    if name == "webhook.accepted" and row.state == "sent":
        row.state = "queued"
    elif name == "recording.started":
        row.state, row.codec = "streaming", event["codec"]
    elif name == "stream.stalled":
        row.note = "stalled → resume"
    elif name == "stream.retry":
        row.note = f"retry: {event.get('error')}"
    elif name == "recording.completed":
        row.state, row.bytes = "archived", event["bytes"]
        row.ttfb_ms, row.attempts, row.path = event["ttfb_ms"], event["attempts"], event["path"]
        row.rate = event["bytes"] / max(event["duration_ms"] / 1000, 1e-3)
        row.note = ""
    elif name == "recording.failed":
        row.state, row.note, row.attempts = "FAILED", event["error"], event["attempts"]


def _verify(row: Row, sim: SimServer, announced: set[str]) -> None:
    if row.state != "archived":
        return
    path = Path(row.path)
    has_sidecar = sidecar_path(path, row.recording_id).is_file()
    _judge(row, path.read_bytes(), has_sidecar, sim, announced)


def _judge(row: Row, data: bytes, has_sidecar: bool, sim: SimServer, announced: set[str]) -> None:
    """Hold an archived file's bytes to the simulator's source (opus as is, WAV less its header)."""
    codec = "opus" if row.path.endswith(".opus") else "pcm"
    size, sha = sim.expected(row.recording_id, codec)
    source = data if codec == "opus" else data[44:]
    problems = []
    if len(source) != size or hashlib.sha256(source).hexdigest() != sha:
        problems.append("bytes differ from the source")
    if not has_sidecar:
        problems.append("no sidecar")
    if row.recording_id not in announced:
        problems.append("not announced")
    row.verified = not problems
    row.state = "verified" if row.verified else "BAD"
    row.note = "; ".join(problems)


async def _webhook_url(tail: _AuditTail, proc: asyncio.subprocess.Process) -> str | None:
    """The daemon's bound webhook URL, or None if it exited before it said."""
    while True:
        for event in tail.read():
            if event["event"] == "daemon.started":
                return f"http://{event['webhook']}/webhooks/cxone"
        if proc.returncode is not None:
            return None
        await asyncio.sleep(0.05)


async def _send_webhooks(
    http: aiohttp.ClientSession,
    urls: Sequence[str],
    corpus: Sequence[RecordingSpec],
    rows: dict[str, Row],
) -> None:
    """One signed webhook per recording, spread over ``urls`` as a load balancer would."""
    signer = Webhook(_DEMO_WEBHOOK_SECRET)
    for i, spec in enumerate(corpus):
        url = urls[i % len(urls)]
        event = {
            "type": "recording.completed",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "data": {"recordingId": spec.id, "contactId": f"c-{spec.id[-2:]}"},
        }
        body = orjson.dumps(event)
        wid = f"msg_demo_{spec.id}"
        now = datetime.now(UTC)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": wid,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(wid, now, body.decode()),
        }
        async with http.post(url, data=body, headers=headers) as resp:
            if resp.status != 202:
                rows[spec.id].state, rows[spec.id].note = "REJECTED", str(resp.status)


class _Lines(Protocol):
    def read(self) -> list[dict[str, Any]]: ...


def _apply_lines(rows: dict[str, Row], tail: _Lines, tty: bool, wall_start: float) -> None:
    for event in tail.read():
        row = rows.get(str(event.get("recording_id")))
        before = (row.state, row.note) if row else None
        _apply(rows, event)
        if row and not tty and (row.state, row.note) != before:
            # Not a terminal (CI, a pipe): one line per change instead of a redraw.
            at = datetime.fromisoformat(event["ts"].replace("Z", "+00:00"))
            elapsed = at.timestamp() - wall_start
            node = f"{event['node']:<7} " if "node" in event else ""
            print(
                f"{elapsed:6.2f}s {row.recording_id:<10} {row.state:<10} "
                f"{node}{row.bytes:>9,} B  {row.note}",
                flush=True,
            )


async def _follow(
    sim: SimServer, rows: dict[str, Row], tail: _AuditTail, tty: bool, started: float
) -> None:
    """Show progress until every recording settled and each archived one was announced."""
    wall_start = time.time() - (time.monotonic() - started)
    deadline = started + _TIMEOUT_S
    while time.monotonic() < deadline:
        _apply_lines(rows, tail, tty, wall_start)
        for rid, row in rows.items():
            if row.state == "streaming":
                served = sim.served(rid).bytes_served
                row.rate = served / max(time.monotonic() - started, 1e-3)
                row.bytes = served
        announced = {a.payload["data"]["recordingId"] for a in sim.announcements}
        settled = all(r.state in ("archived", "FAILED", "REJECTED") for r in rows.values())
        if tty:
            print(_render(rows, time.monotonic() - started, tty), flush=True)
        if settled and all(
            r.recording_id in announced or r.state != "archived" for r in rows.values()
        ):
            return
        await asyncio.sleep(0.25)


async def _run(tmp: Path, keep: bool) -> int:
    tty = sys.stdout.isatty()
    corpus = default_corpus()
    rows = {spec.id: Row(spec.id) for spec in corpus}
    async with SimServer(corpus) as sim, aiohttp.ClientSession() as http:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cxstream",
            "run",
            "--config",
            str(_config(tmp, sim)),
            stdin=asyncio.subprocess.DEVNULL,
        )
        tail = _AuditTail(tmp / "audit.ndjson")
        started = time.monotonic()
        try:
            webhook_url = await _webhook_url(tail, proc)
            if webhook_url is None:
                print("cxstream demo: the daemon did not start", file=sys.stderr)
                return 1
            await _send_webhooks(http, [webhook_url], corpus, rows)
            await _follow(sim, rows, tail, tty, started)
        finally:
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()
        announced = {a.payload["data"]["recordingId"] for a in sim.announcements}
        for row in rows.values():
            _verify(row, sim, announced)
    print(_render(rows, time.monotonic() - started, tty=False))
    ok = all(r.verified for r in rows.values())
    total = sum(r.bytes for r in rows.values())
    print(
        f"\n{sum(r.verified for r in rows.values())}/{len(rows)} recordings verified, "
        f"{total:,} bytes; daemon exit status {proc.returncode}"
    )
    where = "" if keep else "  (removed at exit; `cxstream demo --keep` keeps them)"
    print(f"files: {tmp / 'recordings'}\naudit: {tmp / 'audit.ndjson'}{where}")
    return 0 if ok and proc.returncode == 0 else 1


def main(*, keep: bool = False) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="cxstream-demo-"))
    keep = keep or bool(os.environ.get("CXSTREAM_DEMO_KEEP"))
    try:
        return asyncio.run(_run(tmp, keep))
    except KeyboardInterrupt:
        return 130
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
