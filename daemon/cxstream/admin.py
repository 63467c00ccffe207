"""The admin listener (contract §7): liveness, readiness and Prometheus metrics.

``/readyz`` runs every check in ``READY_CHECKS``, a name → coroutine map; a
new condition is one more entry, passed to
``build_admin_app`` or added to ``CHECKS``, and shows by name in the answer.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cxstream.journal import JournalError
from cxstream.keys import CONFIG, GUARD, JOURNAL, LIFECYCLE, METRICS
from cxstream.sink.store import local_root

Check = Callable[[web.Application], Awaitable[bool]]
READY_CHECKS = web.AppKey("ready_checks", dict[str, Check])


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _writable(path: Path) -> bool:
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            return True
    except OSError:
        return False


async def _listening(app: web.Application) -> bool:
    life = app[LIFECYCLE]
    return life.listening and not life.draining


async def _journal(app: web.Application) -> bool:
    return await app[JOURNAL].healthy()


async def _storage(app: web.Application) -> bool:
    # Where part files are written: storage.dir, or the spool with an object store.
    return await asyncio.to_thread(_writable, local_root(app[CONFIG].storage))


async def _disk_space(app: web.Application) -> bool:
    return await app[GUARD].check()


CHECKS: Mapping[str, Check] = {
    "listening": _listening,
    "journal": _journal,
    "storage": _storage,
    "disk_space": _disk_space,
}


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    checks = {name: await check(app) for name, check in app[READY_CHECKS].items()}
    ok = all(checks.values())
    return web.json_response(
        {"status": "ready" if ok else "not ready", "checks": checks}, status=200 if ok else 503
    )


async def _refresh(app: web.Application) -> None:
    """The gauges read at scrape time: cheap, indexed queries and one statvfs per directory."""
    m, journal = app[METRICS], app[JOURNAL]
    try:
        queued, oldest_at = await journal.queued()
        backlog, _ = await journal.backlog()
    except JournalError:
        # A busy or broken journal must not turn the whole scrape into a 500:
        # the counters are still worth having, these gauges keep their last value.
        pass
    else:
        m.queued.set(queued)
        m.oldest_queued.set(0.0 if oldest_at is None else max(0.0, time.time() - oldest_at))
        m.backlog.set(backlog)
    # The guard sets cxstream_storage_free_bytes{path} as it probes (at most once a second).
    await app[GUARD].check()


async def metrics(request: web.Request) -> web.Response:
    await _refresh(request.app)
    body = await asyncio.to_thread(generate_latest, request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_admin_app(
    main: web.Application, extra_checks: Mapping[str, Check] | None = None
) -> web.Application:
    app = web.Application()
    # Each key by name: a loop over AppKeys of different types defeats the checker.
    app[CONFIG] = main[CONFIG]
    app[JOURNAL] = main[JOURNAL]
    app[LIFECYCLE] = main[LIFECYCLE]
    app[METRICS] = main[METRICS]
    app[GUARD] = main[GUARD]  # built with the workers, before the admin app
    app[READY_CHECKS] = {**CHECKS, **(extra_checks or {})}
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
