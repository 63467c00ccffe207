"""The daemon in process, built by its composition root, against the simulator; and a
watch over every file it writes.

``running`` starts ``build_app`` (real journal, real workers, real notifier)
behind a loopback listener, with the audit trail in a file the test reads.
``SizeWatch`` samples the size of every file under the storage and quarantine
trees while the test runs, so "no file ever exceeded N bytes" is observed, not
just checked at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cxstream.audit.log import close_audit, open_audit
from cxstream.config import Config, load
from cxstream.daemon import build_app
from cxstream.metrics import Metrics
from cxstream.sim.server import SimServer
from tests.harness import completed, sign, write_config
from tests.schema import audit_validator

TERMINAL = ("recording.completed", "recording.failed")


@dataclass
class Node:
    app: web.Application
    client: TestClient[web.Request, web.Application]
    audit_path: Path
    cfg: Config

    def lines(self, event: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        try:
            raw = self.audit_path.read_bytes()
        except FileNotFoundError:
            return []
        out = [orjson.loads(x) for x in raw.splitlines()]
        return [
            x
            for x in out
            if (event is None or x["event"] == event)
            and all(x.get(k) == v for k, v in fields.items())
        ]

    async def post(self, recording_id: str, **data: Any) -> int:
        body = completed(recording_id, **data)
        async with self.client.post("/webhooks/cxone", data=body, headers=sign(body)) as resp:
            return resp.status

    async def wait_line(
        self, events: tuple[str, ...], timeout_s: float = 60.0, **fields: Any
    ) -> dict[str, Any]:
        """The first line of one of ``events`` (with ``fields``), once it is written."""
        async with asyncio.timeout(timeout_s):
            while True:
                for line in self.lines(**fields):
                    if line["event"] in events:
                        return line
                await asyncio.sleep(0.02)

    async def outcome(self, recording_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """The job's ``recording.completed`` or ``recording.failed`` line."""
        return await self.wait_line(TERMINAL, timeout_s, recording_id=recording_id)

    def assert_schema(self) -> None:
        validator = audit_validator()
        for line in self.lines():
            errors = [e.message for e in validator.iter_errors(line)]
            assert not errors, (errors, line)


@asynccontextmanager
async def running(tmp: Path, sim: SimServer, **overrides: dict[str, Any]) -> AsyncIterator[Node]:
    cfg = load(write_config(tmp, sim, **overrides), {})
    cfg.storage.dir.mkdir(parents=True, exist_ok=True)
    cfg.storage.state_dir.mkdir(parents=True, exist_ok=True)
    audit_path = tmp / "audit.ndjson"
    audit, owned = open_audit(str(audit_path), cfg.secrets())
    try:
        app = build_app(cfg, audit, Metrics())
        async with TestClient(TestServer(app)) as client:
            node = Node(app=app, client=client, audit_path=audit_path, cfg=cfg)
            yield node
        node.assert_schema()
    finally:
        close_audit(owned)


@dataclass
class SizeWatch:
    """The largest size seen of every file under ``roots``, sampled every few ms."""

    roots: tuple[Path, ...]
    largest: dict[Path, int] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None

    def scan(self) -> None:
        for root in self.roots:
            for folder, _dirs, files in os.walk(root):
                for name in files:
                    path = Path(folder, name)
                    with contextlib.suppress(FileNotFoundError):
                        size = path.stat().st_size
                        self.largest[path] = max(size, self.largest.get(path, 0))

    async def _run(self) -> None:
        while True:
            self.scan()
            await asyncio.sleep(0.005)

    async def __aenter__(self) -> SizeWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.scan()

    def over(self, limit: int) -> dict[Path, int]:
        return {p: n for p, n in self.largest.items() if n > limit}
