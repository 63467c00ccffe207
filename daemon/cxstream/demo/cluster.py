"""``cxstream demo --nodes N`` (``make demo-cluster``): the demo on several nodes.

The same twelve recordings as ``cxstream demo``, archived by N daemons that
share a throwaway PostgreSQL cluster (the journal) and an S3 bucket with
Object Lock on moto's server (the archive), both started here
(``cxstream.devservers``) and gone at the end. Webhooks are spread over the
nodes' ports as a load balancer would. A few recordings trickle, so streams
are in flight when, halfway, the node streaming the most is killed with
SIGKILL; the others take its jobs over once its leases lapse. At the end
every recording is read back from the bucket and held to the simulator's
source, its sidecar and announcement checked, and the bucket listed: each
recording must be there exactly once. Exit 0 only if all of that holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from cxstream.demo.cluster_check import verify_bucket
from cxstream.demo.show import AuditTail, Board, Frame
from cxstream.demo.stream import StreamScenario
from cxstream.devservers import Missing
from cxstream.devservers import pg as pgdev
from cxstream.devservers import s3 as s3dev
from cxstream.sim.corpus import default_corpus
from cxstream.sim.server import DEFAULT_ARCHIVE_SECRET, SimServer
from cxstream.sim.spec import RecordingSpec, recording_from_dict

_TIMEOUT_S = 150.0
_LEASE_S = 3
_BUCKET = "cxstream-demo"
_PREFIX = "recordings/"
# Long recordings sent slowly: there is something in flight to lose halfway.
_SLOW = {"rec-0003": 96_000, "rec-0011": 64_000, "rec-0012": 96_000}


class _NodeTail(AuditTail):
    """One node's audit file, every event also kept for the summary."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.seen: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        events = super().read()
        self.seen += events
        return events


class _Merged:
    """Every node's new lines in one time order: one node's "accepted" must not be
    applied after another node's "completed" of the same recording."""

    def __init__(self, tails: list[_NodeTail]) -> None:
        self._tails = tails

    def read(self) -> list[dict[str, Any]]:
        events = [e for tail in self._tails for e in tail.read()]
        return sorted(events, key=lambda e: str(e.get("ts", "")))


@dataclass
class _Node:
    name: str
    proc: asyncio.subprocess.Process
    tail: _NodeTail
    url: str = ""

    def started(self) -> set[str]:
        return {str(e["recording_id"]) for e in self.tail.seen if e["event"] == "recording.started"}


@dataclass
class _Kill:
    name: str = ""
    at: float = 0.0
    in_flight: list[str] = field(default_factory=list)


def _corpus() -> list[RecordingSpec]:
    out = []
    for spec in default_corpus():
        if spec.id in _SLOW:
            raw = spec.to_dict()
            raw["faults"].append({"kind": "trickle", "bytes_per_second": _SLOW[spec.id]})
            spec = recording_from_dict(raw)
        out.append(spec)
    return out


def _config(home: Path, name: str, sc: StreamScenario, dsn: str, endpoint: str) -> Path:
    """The stream demo's [webhook] and [cxone], and this node's journal, store and files."""
    text = (
        sc.config()
        + f"""
[streams]
concurrency = 2
idle_timeout_s = 2
max_attempts = 10
backoff_base_s = 0.2
backoff_cap_s = 2
[journal]
backend = "postgres"
dsn = "{dsn}"
node = "{name}"
lease_s = {_LEASE_S}
[storage]
dir = "{home / "recordings"}"
state_dir = "{home / "state"}"
backend = "s3"
bucket = "{_BUCKET}"
prefix = "{_PREFIX}"
endpoint = "{endpoint}"
region = "{s3dev.REGION}"
access_key_id = "{s3dev.ACCESS_KEY_ID}"
secret_access_key = "{s3dev.SECRET_ACCESS_KEY}"
retention_mode = "GOVERNANCE"
retention_days = 1
[archive]
url = "{sc.archive_url}"
secret = "{DEFAULT_ARCHIVE_SECRET}"
[audit]
path = "{home / "audit.ndjson"}"
[admin]
listen = "127.0.0.1:0"
"""
    )
    home.mkdir(parents=True, exist_ok=True)
    path = home / "cxstream.toml"
    path.write_text(text)
    return path


async def _start(tmp: Path, count: int, sc: StreamScenario, dsn: str, endpoint: str) -> list[_Node]:
    nodes = []
    for i in range(1, count + 1):
        name, home = f"node-{i}", tmp / f"node-{i}"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cxstream", "run", "--config",
            str(_config(home, name, sc, dsn, endpoint)), stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        nodes.append(_Node(name, proc, _NodeTail(home / "audit.ndjson")))
    async with asyncio.timeout(30):
        for node in nodes:
            while not node.url:
                for event in node.tail.read():
                    if event["event"] == "daemon.started":
                        node.url = f"http://{event['webhook']}/webhooks/cxone"
                if node.proc.returncode is not None:
                    raise RuntimeError(f"{node.name} did not start")
                await asyncio.sleep(0.05)
    return nodes


async def _send(
    http: aiohttp.ClientSession, sc: StreamScenario, urls: list[str], board: Board
) -> None:
    """The stream demo's webhooks, spread over the nodes as a load balancer would."""
    for i, spec in enumerate(sc.corpus):
        await StreamScenario(sc.sim, [spec]).send(http, urls[i % len(urls)], board)


def _streaming(board: Board, node: str) -> list[str]:
    return [r.name for r in board.rows.values() if r.state == "streaming" and r.node == node]


def _kill(nodes: list[_Node], board: Board, kill: _Kill, elapsed: float) -> _Node:
    """SIGKILL the node with the most streams in flight: no checkpoint, no hand-back."""
    victim = max(nodes, key=lambda n: len(_streaming(board, n.name)))
    victim.proc.kill()
    kill.name, kill.at = victim.name, elapsed
    kill.in_flight = _streaming(board, victim.name)
    for name in kill.in_flight:
        board.rows[name].note = f"{victim.name} killed: waiting for its lease"
    return victim


async def _follow(
    sc: StreamScenario, nodes: list[_Node], board: Board, kill: _Kill, started: float
) -> None:
    """Progress until every recording settled and was announced; one node killed halfway."""
    tty = sys.stdout.isatty()
    wall_start = time.time() - (time.monotonic() - started)
    lines, frame = _Merged([n.tail for n in nodes]), Frame()
    while time.monotonic() < started + _TIMEOUT_S:
        for event in lines.read():
            for row in board.apply(event):
                if not tty:
                    print(board.line(row, event, wall_start), flush=True)
        for row in board.rows.values():
            if row.state == "streaming":
                row.bytes = sc.served(row) or 0
        archived = sum(r.state == "archived" for r in board.rows.values())
        in_flight = any(_streaming(board, n.name) for n in nodes)
        if not kill.name and (board.settled() or (2 * archived >= len(board.rows) and in_flight)):
            victim = _kill(nodes, board, kill, time.monotonic() - started)
            await victim.proc.wait()
            if not tty:
                print(f"{kill.at:6.2f}s {victim.name} killed (SIGKILL)", flush=True)
        if tty:
            live = board.render(sc.title, time.monotonic() - started)
            print(frame.draw(live), end="", flush=True)
        announced = {a.payload["data"]["recordingId"] for a in sc.announcements}
        if (
            kill.name
            and board.settled()
            and all(r.name in announced for r in board.rows.values() if r.state == "archived")
        ):
            break
        await asyncio.sleep(0.25)
    print(frame.erase(), end="", flush=True)


def _takeovers(nodes: list[_Node], board: Board, kill: _Kill) -> list[str]:
    """Notes for the rows the killed node had started and another node archived."""
    victim = next(n for n in nodes if n.name == kill.name)
    moved = []
    for name in sorted(victim.started()):
        row = board.rows[name]
        if row.state == "verified" and row.node != kill.name:
            row.note = f"taken over from {kill.name}"
            moved.append(f"{name} → {row.node}")
    return moved


async def _run(tmp: Path, count: int, dsn: str, endpoint: str) -> int:
    corpus = _corpus()
    kill = _Kill()
    await s3dev.make_bucket(endpoint, _BUCKET, object_lock=True)
    print(
        f"cluster: {count} nodes; journal {dsn}; archive s3://{_BUCKET}/{_PREFIX} on {endpoint}"
        " (Object Lock, GOVERNANCE 1 day); one node will be killed halfway",
        flush=True,
    )
    async with SimServer(corpus) as sim, aiohttp.ClientSession() as http:
        sc = StreamScenario(sim, corpus)
        sc.title = f"cxstream demo: cxone-stream on {count} nodes, {len(corpus)} recordings"
        board = Board(list(sc.jobs), max(len(j) for j in sc.jobs))
        started = time.monotonic()
        nodes = await _start(tmp, count, sc, dsn, endpoint)
        try:
            await _send(http, sc, [n.url for n in nodes], board)
            await _follow(sc, nodes, board, kill, started)
        finally:
            for node in nodes:
                if node.proc.returncode is None:
                    node.proc.terminate()
            codes = {n.name: await n.proc.wait() for n in nodes}
        objects, problems = await verify_bucket(sc, board, endpoint, _BUCKET, _PREFIX)
    moved = _takeovers(nodes, board, kill) if kill.name else []
    print(board.render(sc.title, time.monotonic() - started))
    print(
        f"\n{kill.name or 'no node'} killed (SIGKILL) at {kill.at:.1f}s with "
        f"{len(kill.in_flight)} stream(s) in flight; taken over from zero: "
        f"{', '.join(moved) or '-'}"
    )
    for problem in problems:
        print(f"PROBLEM: {problem}")
    verified = sum(r.verified for r in board.rows.values())
    survivors = {n: c for n, c in codes.items() if n != kill.name}
    print(
        f"{verified}/{len(board.rows)} recordings verified in s3://{_BUCKET}/{_PREFIX} "
        f"({objects} objects: each recording once, with its sidecar); "
        + ", ".join(f"{n} exit {c}" for n, c in survivors.items())
    )
    ok = verified == len(board.rows) and not problems and all(c == 0 for c in survivors.values())
    return 0 if ok and kill.name else 1


def main(*, nodes: int, keep: bool = False) -> int:
    try:
        pgdev.check()
        s3dev.check()
    except Missing as exc:
        print(f"cxstream demo: the cluster demo needs PostgreSQL and moto: {exc}", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="cxstream-demo-cluster-"))
    keep = keep or bool(os.environ.get("CXSTREAM_DEMO_KEEP"))
    try:
        with contextlib.ExitStack() as stack:
            try:
                dsn = stack.enter_context(pgdev.cluster()).dsn()
                endpoint = stack.enter_context(s3dev.running())
            except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                print(f"cxstream demo: cannot start the dev servers: {exc}", file=sys.stderr)
                return 2
            code = asyncio.run(_run(tmp, nodes, dsn, endpoint))
    except KeyboardInterrupt:
        return 130
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    where = "" if keep else "  (removed at exit; `--keep` keeps them)"
    print(f"audit: {tmp}/node-*/audit.ndjson{where}")
    return code
