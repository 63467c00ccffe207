"""The fetch core in process: the daemon's own runner, a real journal, the simulator.

``build_app`` from the composition root opens the journal (a real SQLite file
in a temporary directory), the HTTP session and, when ``archive.url`` is set,
the notifier, through its own ``cleanup_ctx``. The workers' context is
swapped for one that builds the pool without starting it, and the runner is
built by ``build_runner`` exactly as the workers get it: a test hands it one
job at a time (``Rig.run``) and sees what it raised. Nothing listens: the
runner only talks out, to the simulator.

The audit pipeline is the real one writing into a ``Trail`` in memory
(tests/trail.py), which holds every line to docs/audit.schema.json as it
arrives; on the way out of ``rig()`` the trail must be valid and free of
every secret and every token the simulator issued.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from cxstream.audit import audit_to
from cxstream.config import Config, load
from cxstream.daemon import _workers_ctx, build_app, build_pool, build_runner
from cxstream.fetcher.job import JobRunner
from cxstream.ingress.event import parse_event
from cxstream.journal import Job, JobRequest, SqliteJournal
from cxstream.keys import JOURNAL, METRICS, POOL
from cxstream.metrics import Metrics
from cxstream.sim.server import SimServer
from cxstream.sink.record import final_path, sidecar_path
from cxstream.sink.store import local_root
from tests.harness import completed, write_config
from tests.trail import Trail

# The day harness.completed() files every recording under.
DAY = "2026/11/24"


def webhook_request(recording_id: str, **data: Any) -> JobRequest:
    """The job a signed webhook for ``recording_id`` asks for, parsed as the ingress does."""
    doc = orjson.loads(completed(recording_id, **data))
    request = parse_event(doc, f"msg_{recording_id}", datetime.now(UTC))
    assert request is not None
    return request


@dataclass
class Rig:
    app: web.Application
    cfg: Config
    trail: Trail
    runner: JobRunner
    sim: SimServer

    @property
    def journal(self) -> SqliteJournal:
        journal = self.app[JOURNAL]
        assert isinstance(journal, SqliteJournal)
        return journal

    @property
    def metrics(self) -> Metrics:
        return self.app[METRICS]

    async def submit(self, recording_id: str, **data: Any) -> Job:
        """Journal the job a webhook for ``recording_id`` would, and claim it as a worker does."""
        await self.journal.enqueue(webhook_request(recording_id, **data))
        job = await self.journal.claim()
        assert job is not None and job.recording_id == recording_id
        return job

    async def run(self, recording_id: str, **data: Any) -> Job:
        """One job, start to finish (completed or failed); raises what the runner raised."""
        job = await self.submit(recording_id, **data)
        await self.runner.run(job)
        return job

    async def claim(self) -> Job:
        job = await self.journal.claim()
        assert job is not None
        return job

    def path(self, recording_id: str, codec: str) -> Path:
        return final_path(self.cfg.storage.dir, DAY, recording_id, codec)

    def sidecar(self, recording_id: str, codec: str) -> dict[str, Any]:
        raw = sidecar_path(self.path(recording_id, codec), recording_id).read_bytes()
        return orjson.loads(raw)  # type: ignore[no-any-return]

    def files(self) -> list[Path]:
        """Every file under storage.dir (published, sidecars, part files)."""
        return sorted(p for p in self.cfg.storage.dir.rglob("*") if p.is_file())

    def quarantined(self) -> list[Path]:
        return sorted((self.cfg.storage.state_dir / "quarantine").glob("*"))

    def row(self, recording_id: str) -> dict[str, Any]:
        """The job's journal row, read beside the runner as an operator would."""
        db = sqlite3.connect(f"file:{self.journal.path}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        try:
            found = db.execute("SELECT * FROM jobs WHERE recording_id = ?", (recording_id,))
            return dict(found.fetchone())
        finally:
            db.close()

    def retries(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "cxstream_stream_retries_total", {"reason": reason}
        )
        return value or 0.0


# Fast defaults: a stall is noticed in half a second, a backoff is short.
FAST = {
    "idle_timeout_s": 0.5,
    "max_attempts": 4,
    "backoff_base_s": 0.01,
    "backoff_cap_s": 0.05,
}


async def _idle_pool(app: web.Application) -> AsyncIterator[None]:
    """The pool as the daemon builds it (``on_enqueued`` wakes it), never started."""
    app[POOL] = build_pool(app)
    yield


@asynccontextmanager
async def rig(tmp: Path, sim: SimServer, **overrides: dict[str, Any]) -> AsyncIterator[Rig]:
    """The runner over ``tmp`` (reuse ``tmp`` for a second rig: a restart)."""
    sections: dict[str, dict[str, Any]] = {"streams": dict(FAST), "archive": {"url": ""}}
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    cfg = load(write_config(tmp, sim, **sections), {})
    for path in (local_root(cfg.storage), cfg.storage.state_dir):  # as daemon.serve does
        path.mkdir(parents=True, exist_ok=True)
    trail = Trail()
    app = build_app(cfg, audit_to(trail, cfg.secrets()), Metrics())
    app.cleanup_ctx[app.cleanup_ctx.index(_workers_ctx)] = _idle_pool
    # No site: the contexts run (journal, session, notifier) and nothing listens.
    app_runner = web.AppRunner(app, handle_signals=False)
    await app_runner.setup()
    try:
        yield Rig(app=app, cfg=cfg, trail=trail, runner=build_runner(app), sim=sim)
    finally:
        await app_runner.cleanup()
    trail.assert_clean([*cfg.secrets(), *sim.state.issued_tokens])
