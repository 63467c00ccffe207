"""The composition root: every part is built here, and only here.

Resources open and close through the web app's ``cleanup_ctx`` in data-path
order (journal, HTTP session, notifier, workers) and close in reverse. A
stop signal first turns the webhook to 503, then cancels the workers (each
checkpoints under shield), then closes listeners and resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from cxstream import __version__
from cxstream.admin import build_admin_app
from cxstream.audit import AuditLog
from cxstream.config import Config
from cxstream.fetcher.job import JobRunner
from cxstream.fetcher.pool import WorkerPool
from cxstream.fetcher.publish import Publisher
from cxstream.fetcher.sources import make_source
from cxstream.fetcher.transport import make_session
from cxstream.ingress.auth import AUTHENTICATOR, authenticator_for
from cxstream.ingress.webhook import never_500, receive
from cxstream.journal import SqliteJournal
from cxstream.keys import (
    AUDIT,
    CONFIG,
    GUARD,
    JOURNAL,
    LIFECYCLE,
    METRICS,
    POOL,
    SESSION,
    Lifecycle,
)
from cxstream.metrics import Metrics
from cxstream.notifier.archive import ArchiveNotifier
from cxstream.sink.space import DiskGuard

NOTIFIER = web.AppKey("notifier", ArchiveNotifier)
JOURNAL_FILE = "journal.sqlite3"
# SIGTERM to exit must fit systemd's TimeoutStopSec (15 s) with room to spare.
WORKER_STOP_S = 6.0
INFLIGHT_WAIT_S = 5.0
HTTP_SHUTDOWN_S = 2.0
log = logging.getLogger(__name__)


async def _journal_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    journal = SqliteJournal(cfg.storage.state_dir / JOURNAL_FILE)
    await journal.open()
    requeued = await journal.requeue_running()
    app[AUDIT].info("journal.opened", path=str(journal.path), requeued=requeued)
    app[JOURNAL] = journal
    yield
    await journal.close()


async def _session_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    session = make_session(
        pool_size=cfg.streams.concurrency * 2 + 4, connect_timeout_s=cfg.cxone.connect_timeout_s
    )
    app[SESSION] = session
    yield
    await session.close()


async def _notifier_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    if not cfg.archive.url:
        yield
        return
    notifier = ArchiveNotifier(
        config=cfg.archive,
        journal=app[JOURNAL],
        session=app[SESSION],
        audit=app[AUDIT],
        metrics=app[METRICS],
    )
    app[NOTIFIER] = notifier
    task = asyncio.create_task(notifier.run(), name="cxstream-notifier")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def build_runner(app: web.Application) -> JobRunner:
    """The job runner as the daemon's workers use it (tests drive it job by job)."""
    cfg = app[CONFIG]
    notifier = app.get(NOTIFIER)
    on_completed = None if notifier is None else notifier.wake
    return JobRunner(
        config=cfg,
        source=make_source(cfg, app[SESSION]),
        journal=app[JOURNAL],
        audit=app[AUDIT],
        metrics=app[METRICS],
        publisher=Publisher(
            config=cfg, journal=app[JOURNAL], metrics=app[METRICS], on_completed=on_completed
        ),
        on_enqueued=lambda: app[POOL].wake(),
    )


def build_pool(app: web.Application) -> WorkerPool:
    """The worker pool as the daemon runs it (tests build it too, without starting it)."""
    cfg = app[CONFIG]
    return WorkerPool(
        journal=app[JOURNAL],
        runner=build_runner(app),
        size=cfg.streams.concurrency,
        audit=app[AUDIT],
        metrics=app[METRICS],
        guard=app[GUARD],
    )


async def _workers_ctx(app: web.Application) -> AsyncIterator[None]:
    pool = app[POOL] = build_pool(app)
    pool.start()
    yield
    await pool.stop(WORKER_STOP_S)


def build_app(config: Config, audit: AuditLog, metrics: Metrics) -> web.Application:
    app = web.Application(middlewares=[never_500])
    app[CONFIG] = config
    app[AUDIT] = audit
    app[METRICS] = metrics
    app[LIFECYCLE] = Lifecycle()
    app[GUARD] = DiskGuard(
        (config.storage.dir, config.storage.state_dir),
        config.storage.min_free_bytes,
        audit,
        metrics,
    )
    app[AUTHENTICATOR] = authenticator_for(config.webhook)
    app.cleanup_ctx.extend([_journal_ctx, _session_ctx, _notifier_ctx, _workers_ctx])
    app.router.add_post("/webhooks/cxone", receive)
    return app


def _bound(runner: web.AppRunner) -> str:
    """The address actually bound: with port 0 the kernel picks, and tests read it here."""
    host, port = runner.addresses[0][:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class StartError(Exception):
    """The daemon cannot start (a port taken, a directory it cannot create)."""


async def serve(config: Config, audit: AuditLog, stop: asyncio.Event) -> None:
    for path in (config.storage.dir, config.storage.state_dir):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartError(f"cannot create {path}: {exc.strerror}") from None
    app = build_app(config, audit, Metrics())
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=HTTP_SHUTDOWN_S
    )
    await runner.setup()
    admin_runner = web.AppRunner(build_admin_app(app), access_log=None, shutdown_timeout=1.0)
    await admin_runner.setup()
    try:
        hook = web.TCPSite(runner, config.webhook.listen.host, config.webhook.listen.port)
        admin = web.TCPSite(admin_runner, config.admin.listen.host, config.admin.listen.port)
        try:
            await hook.start()
            await admin.start()
        except OSError as exc:
            raise StartError(f"cannot listen: {exc.strerror}") from None
        app[LIFECYCLE].listening = True
        audit.info(
            "daemon.started",
            version=__version__,
            webhook=_bound(runner),
            admin=_bound(admin_runner),
            concurrency=config.streams.concurrency,
        )
        await stop.wait()
        life = app[LIFECYCLE]
        audit.info("daemon.stopping", inflight_webhooks=life.inflight)
        life.draining = True
        # While the workers checkpoint, the listener stays open: new webhooks
        # get 503 + Retry-After (CXone retries), and those already being read
        # finish with their real answer. Only then do the sockets close.
        grace = asyncio.gather(
            asyncio.sleep(config.webhook.drain_grace_s), life.wait_idle(INFLIGHT_WAIT_S)
        )
        await asyncio.gather(app[POOL].stop(WORKER_STOP_S), grace)
    finally:
        await admin_runner.cleanup()
        await runner.cleanup()
    audit.info("daemon.stopped")


async def run(
    config: Config, audit: AuditLog, reopen_audit: Callable[[], None] | None = None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if reopen_audit is not None:
        loop.add_signal_handler(signal.SIGHUP, _reopen, reopen_audit)
    await serve(config, audit, stop)


def _reopen(reopen_audit: Callable[[], None]) -> None:
    try:
        reopen_audit()
    except OSError as exc:
        # Keep writing to the old file rather than lose lines; say why on stderr.
        log.error("cannot reopen the audit file: %s", exc.strerror)
