"""The admin listener (contract §7): liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cxstream.journal import JournalError
from cxstream.keys import CONFIG, GUARD, JOURNAL, LIFECYCLE, METRICS


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _writable(path: Path) -> bool:
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            return True
    except OSError:
        return False


async def readyz(request: web.Request) -> web.Response:
    app = request.app
    life, cfg = app[LIFECYCLE], app[CONFIG]
    checks = {
        "listening": life.listening and not life.draining,
        "journal": await app[JOURNAL].healthy(),
        "storage": await asyncio.to_thread(_writable, cfg.storage.dir),
        "disk_space": await app[GUARD].check(),
    }
    ok = all(checks.values())
    return web.json_response(
        {"status": "ready" if ok else "not ready", "checks": checks}, status=200 if ok else 503
    )


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    m = app[METRICS]
    try:
        counts = await app[JOURNAL].counts()
    except JournalError:
        # A busy or broken journal must not turn the whole scrape into a 500:
        # the counters are still worth having, the two gauges keep their last value.
        pass
    else:
        m.queued.set(counts["queued"])
        m.backlog.set(counts["archive_backlog"])
    body = await asyncio.to_thread(generate_latest, m.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_admin_app(main: web.Application) -> web.Application:
    app = web.Application()
    # Each key by name: a loop over AppKeys of different types defeats the checker.
    app[CONFIG] = main[CONFIG]
    app[JOURNAL] = main[JOURNAL]
    app[LIFECYCLE] = main[LIFECYCLE]
    app[METRICS] = main[METRICS]
    app[GUARD] = main[GUARD]  # built with the workers, before the admin app
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
