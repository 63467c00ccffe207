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

from cxstream.demo import (
    _DEMO_WEBHOOK_SECRET,
    Row,
    _apply_lines,
    _AuditTail,
    _judge,
    _render,
    _send_webhooks,
)
from cxstream.devservers import Missing
from cxstream.devservers import pg as pgdev
from cxstream.devservers import s3 as s3dev
from cxstream.sim.corpus import default_corpus
from cxstream.sim.server import (
    DEFAULT_ARCHIVE_SECRET,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    SimServer,
)
from cxstream.sim.spec import RecordingSpec, recording_from_dict

_TIMEOUT_S = 150.0
_LEASE_S = 3
_BUCKET = "cxstream-demo"
_PREFIX = "recordings/"
# Long recordings sent slowly: there is something in flight to lose halfway.
_SLOW = {"rec-0003": 96_000, "rec-0011": 64_000, "rec-0012": 96_000}


class _NodeTail(_AuditTail):
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


def _config(home: Path, name: str, sim: SimServer, dsn: str, endpoint: str) -> Path:
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
url = "{sim.archive_url}"
secret = "{DEFAULT_ARCHIVE_SECRET}"
[audit]
path = "{home / "audit.ndjson"}"
[admin]
listen = "127.0.0.1:0"
"""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "cxstream.toml"
    path.write_text(text)
    return path


async def _start(tmp: Path, count: int, sim: SimServer, dsn: str, endpoint: str) -> list[_Node]:
    nodes = []
    for i in range(1, count + 1):
        name, home = f"node-{i}", tmp / f"node-{i}"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cxstream", "run", "--config",
            str(_config(home, name, sim, dsn, endpoint)), stdin=asyncio.subprocess.DEVNULL,
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


def _streaming(rows: dict[str, Row], node: str) -> list[str]:
    return [r.recording_id for r in rows.values() if r.state == "streaming" and r.node == node]


async def _follow(
    sim: SimServer, nodes: list[_Node], rows: dict[str, Row], kill: _Kill, started: float
) -> None:
    """Progress until every recording settled and was announced; one node killed halfway."""
    tty = sys.stdout.isatty()
    wall_start = time.time() - (time.monotonic() - started)
    lines = _Merged([n.tail for n in nodes])
    while time.monotonic() < started + _TIMEOUT_S:
        _apply_lines(rows, lines, tty, wall_start)
        archived = sum(r.state == "archived" for r in rows.values())
        settled = all(r.state in ("archived", "FAILED", "REJECTED") for r in rows.values())
        busiest = max(nodes, key=lambda n: len(_streaming(rows, n.name)))
        halfway = archived * 2 >= len(rows) and _streaming(rows, busiest.name)
        if not kill.name and (halfway or settled):
            busiest.proc.kill()  # SIGKILL: no checkpoint, no hand-back
            await busiest.proc.wait()
            kill.name, kill.at = busiest.name, time.monotonic() - started
            kill.in_flight = _streaming(rows, busiest.name)
            for rid in kill.in_flight:
                rows[rid].note = f"{busiest.name} killed: waiting for its lease"
            if not tty:
                print(f"{kill.at:6.2f}s {busiest.name} killed (SIGKILL)", flush=True)
        announced = {a.payload["data"]["recordingId"] for a in sim.announcements}
        if tty:
            print(_render(rows, time.monotonic() - started, tty), flush=True)
        if (
            kill.name
            and settled
            and all(r.recording_id in announced or r.state != "archived" for r in rows.values())
        ):
            return
        await asyncio.sleep(0.25)


async def _verify(rows: dict[str, Row], sim: SimServer, endpoint: str) -> tuple[int, list[str]]:
    """Every archived row against the bucket; returns the object count and what is wrong."""
    from aiobotocore.session import get_session

    announced = {a.payload["data"]["recordingId"] for a in sim.announcements}
    problems: list[str] = []
    async with get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=s3dev.REGION,
        aws_access_key_id=s3dev.ACCESS_KEY_ID,
        aws_secret_access_key=s3dev.SECRET_ACCESS_KEY,
    ) as client:
        listed = await client.list_objects_v2(Bucket=_BUCKET, Prefix=_PREFIX)
        keys = [o["Key"] for o in listed.get("Contents", [])]
        for row in rows.values():
            if row.state != "archived":
                continue
            key = row.path.removeprefix(f"s3://{_BUCKET}/")
            data = await (await client.get_object(Bucket=_BUCKET, Key=key))["Body"].read()
            sidecar = key.rsplit(".", 1)[0] + ".json"
            _judge(row, data, sidecar in keys, sim, announced)
        wanted = [r.path.removeprefix(f"s3://{_BUCKET}/") for r in rows.values() if r.path]
        recordings = [k for k in keys if not k.endswith(".json")]
        if sorted(recordings) != sorted(wanted):
            problems.append(f"the bucket holds {sorted(recordings)}, expected each once: {wanted}")
        if len(keys) != 2 * len(recordings):
            problems.append(f"{len(keys)} objects for {len(recordings)} recordings")
    return len(keys), problems


def _takeovers(nodes: list[_Node], rows: dict[str, Row], kill: _Kill) -> list[str]:
    """Notes for the rows the killed node had started and another node archived."""
    victim = next(n for n in nodes if n.name == kill.name)
    moved = []
    for rid in sorted(victim.started()):
        row = rows[rid]
        if row.state == "verified" and row.node != kill.name:
            row.note = f"taken over from {kill.name}"
            moved.append(f"{rid} → {row.node}")
    return moved


async def _run(tmp: Path, count: int, dsn: str, endpoint: str, keep: bool) -> int:
    corpus = _corpus()
    rows = {spec.id: Row(spec.id) for spec in corpus}
    kill = _Kill()
    await s3dev.make_bucket(endpoint, _BUCKET, object_lock=True)
    print(
        f"cluster: {count} nodes; journal {dsn}; archive s3://{_BUCKET}/{_PREFIX} on {endpoint}"
        f" (Object Lock, GOVERNANCE 1 day); one node will be killed halfway",
        flush=True,
    )
    async with SimServer(corpus) as sim, aiohttp.ClientSession() as http:
        started = time.monotonic()
        nodes = await _start(tmp, count, sim, dsn, endpoint)
        try:
            await _send_webhooks(http, [n.url for n in nodes], corpus, rows)
            await _follow(sim, nodes, rows, kill, started)
        finally:
            for node in nodes:
                if node.proc.returncode is None:
                    node.proc.terminate()
            codes = {n.name: await n.proc.wait() for n in nodes}
        objects, problems = await _verify(rows, sim, endpoint)
    moved = _takeovers(nodes, rows, kill)
    print(_render(rows, time.monotonic() - started, tty=False))
    print(
        f"\n{kill.name or 'no node'} killed (SIGKILL) at {kill.at:.1f}s with "
        f"{len(kill.in_flight)} stream(s) in flight; taken over from zero: "
        f"{', '.join(moved) or '-'}"
    )
    for problem in problems:
        print(f"PROBLEM: {problem}")
    verified = sum(r.verified for r in rows.values())
    survivors = {n: c for n, c in codes.items() if n != kill.name}
    print(
        f"{verified}/{len(rows)} recordings verified in s3://{_BUCKET}/{_PREFIX} "
        f"({objects} objects: each recording once, with its sidecar); "
        + ", ".join(f"{n} exit {c}" for n, c in survivors.items())
    )
    where = "" if keep else "  (removed at exit; `--keep` keeps them)"
    print(f"audit: {tmp}/node-*/audit.ndjson{where}")
    ok = verified == len(rows) and not problems and all(c == 0 for c in survivors.values())
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
            return asyncio.run(_run(tmp, nodes, dsn, endpoint, keep))
    except KeyboardInterrupt:
        return 130
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
