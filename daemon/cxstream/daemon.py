"""The composition root: every part is built here, and only here.

Resources open and close through the web app's ``cleanup_ctx`` in data-path
order (journal, store, HTTP session, notifier, workers) and close in reverse. A
stop signal first turns the webhook to 503, then cancels the workers (each
checkpoints under shield), then closes listeners and resources. Under systemd
(``Type=notify``) the daemon says READY=1 once both listeners are bound,
pings the watchdog from the event loop, and says STOPPING=1 / RELOADING=1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from cxstream import __version__
from cxstream.admin import Check, build_admin_app
from cxstream.audit import AuditLog
from cxstream.config import Config
from cxstream.fetcher.job import JobRunner
from cxstream.fetcher.pool import WorkerPool
from cxstream.fetcher.publish import Publisher
from cxstream.fetcher.sources import make_source
from cxstream.fetcher.transport import make_session
from cxstream.ingress.auth import AUTHENTICATOR, authenticator_for
from cxstream.ingress.backpressure import ADMISSION, Admission
from cxstream.ingress.webhook import never_500, receive
from cxstream.journal import Journal, JournalError, WakesWorkers, build_journal
from cxstream.keys import (
    AUDIT,
    CONFIG,
    GUARD,
    JOURNAL,
    LIFECYCLE,
    METRICS,
    POOL,
    SESSION,
    STORE,
    Lifecycle,
)
from cxstream.listeners import GuardedSite
from cxstream.looplag import loop_lag_ctx
from cxstream.metrics import Metrics
from cxstream.notifier.archive import ArchiveNotifier
from cxstream.sdnotify import SdNotify, monotonic_usec
from cxstream.service import StatusReporter
from cxstream.sink.space import DiskGuard
from cxstream.sink.spool import HoldsLeases, sweep
from cxstream.sink.store import Store, StoreStartError, local_root, open_store

NOTIFIER = web.AppKey("notifier", ArchiveNotifier)
# SIGTERM to exit must fit systemd's TimeoutStopSec (15 s) with room to spare.
WORKER_STOP_S = 6.0
INFLIGHT_WAIT_S = 5.0
HTTP_SHUTDOWN_S = 2.0
# aiohttp's own keep-alive timer, a backstop behind the listener guard's (listeners.py).
BACKSTOP_S = 1.0
log = logging.getLogger(__name__)


async def _journal_ctx(app: web.Application) -> AsyncIterator[None]:
    journal: Journal = build_journal(app[CONFIG], on_commit=app[METRICS].journal_commit.observe)
    try:
        await journal.open()
        requeued = await journal.requeue_running()
    except JournalError as exc:
        await journal.close()
        raise StartError(f"journal: {exc}") from None
    app[AUDIT].info("journal.opened", path=journal.location, requeued=requeued)
    app[JOURNAL] = journal
    yield
    await journal.close()


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    """Where verified recordings go; an object store is opened (and checked) once."""
    cfg, audit = app[CONFIG], app[AUDIT]
    try:
        async with open_store(cfg.storage, audit) as store:
            app[STORE] = store
            if cfg.storage.backend == "s3":
                await _sweep_spool(app, store)
            yield
    except StoreStartError as exc:
        raise StartError(f"storage: {exc}") from None


async def _sweep_spool(app: web.Application, store: Store) -> None:
    """Before any worker runs: part files of jobs another node took over are dead."""
    journal, stale = app[JOURNAL], []
    if isinstance(journal, HoldsLeases):
        try:
            stale = await sweep(store.local_root, journal.still_mine)
        except JournalError as exc:
            raise StartError(f"journal: {exc}") from None
    app[AUDIT].info(
        "store.opened", store=store.where, spool=str(store.local_root), stale_parts=len(stale)
    )


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


def make_runner(
    cfg: Config,
    session: aiohttp.ClientSession,
    journal: Journal,
    audit: AuditLog,
    metrics: Metrics,
    *,
    store: Store,
    on_completed: Callable[[], None] | None = None,
    on_enqueued: Callable[[], None] | None = None,
) -> JobRunner:
    """How a job is run: the daemon's workers and ``cxstream fetch`` share this."""
    return JobRunner(
        config=cfg,
        source=make_source(cfg, session, audit, metrics),
        journal=journal,
        audit=audit,
        metrics=metrics,
        publisher=Publisher(
            config=cfg, journal=journal, metrics=metrics, store=store, on_completed=on_completed
        ),
        on_enqueued=on_enqueued,
    )


def build_runner(app: web.Application) -> JobRunner:
    """The job runner as the daemon's workers use it (tests drive it job by job)."""
    notifier = app.get(NOTIFIER)
    return make_runner(
        app[CONFIG],
        app[SESSION],
        app[JOURNAL],
        app[AUDIT],
        app[METRICS],
        store=app[STORE],
        on_completed=None if notifier is None else notifier.wake,
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
        store=app[STORE],
    )


async def _workers_ctx(app: web.Application) -> AsyncIterator[None]:
    pool = app[POOL] = build_pool(app)
    journal = app[JOURNAL]
    if isinstance(journal, WakesWorkers):
        # A job queued through another node wakes this node's idle workers too.
        journal.on_work(pool.wake)
    pool.start()
    yield
    await pool.stop(WORKER_STOP_S)


def build_app(config: Config, audit: AuditLog, metrics: Metrics) -> web.Application:
    app = web.Application(middlewares=[metrics.timed(), never_500])
    app[CONFIG] = config
    app[AUDIT] = audit
    app[METRICS] = metrics
    app[LIFECYCLE] = Lifecycle()
    app[ADMISSION] = Admission(config.streams.max_queued)
    app[GUARD] = DiskGuard(
        (local_root(config.storage), config.storage.state_dir),
        config.storage.min_free_bytes,
        audit,
        metrics,
    )
    app[AUTHENTICATOR] = authenticator_for(config.webhook)
    app.cleanup_ctx.extend(
        [loop_lag_ctx, _journal_ctx, _store_ctx, _session_ctx, _notifier_ctx, _workers_ctx]
    )
    app.router.add_post("/webhooks/cxone", receive)
    return app


def _store_check(app: web.Application) -> dict[str, Check]:
    """``/readyz`` probes an object store (the filesystem has its own checks)."""
    if app[CONFIG].storage.backend != "s3":
        return {}
    store = app[STORE]

    async def _store(_admin: web.Application) -> bool:
        return await store.healthy()

    return {"store": _store}


def _bound(runner: web.AppRunner) -> str:
    """The address actually bound: with port 0 the kernel picks, and tests read it here."""
    host, port = runner.addresses[0][:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class StartError(Exception):
    """The daemon cannot start (a port taken, a directory it cannot create)."""


async def serve(
    config: Config, audit: AuditLog, stop: asyncio.Event, notify: SdNotify | None = None
) -> None:
    notify = notify or SdNotify({})
    # Where part files go (storage.dir, or the spool for s3), and the state.
    for path in (local_root(config.storage), config.storage.state_dir):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StartError(f"cannot create {path}: {exc.strerror}") from None
    if config.journal.backend == "postgres":
        # Several nodes write one story: every line says which node wrote it.
        audit = audit.bind(node=config.journal.node)
    metrics = Metrics()
    app = build_app(config, audit, metrics)
    hook_limits, admin_limits = config.webhook.limits, config.admin.limits
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=HTTP_SHUTDOWN_S,
        keepalive_timeout=hook_limits.keepalive_timeout_s + BACKSTOP_S,
    )
    await runner.setup()
    admin_runner = web.AppRunner(
        build_admin_app(app, _store_check(app)),
        access_log=None,
        shutdown_timeout=1.0,
        keepalive_timeout=admin_limits.keepalive_timeout_s + BACKSTOP_S,
    )
    await admin_runner.setup()
    status = StatusReporter(
        notify=notify, journal=app[JOURNAL], admission=app[ADMISSION], metrics=app[METRICS]
    )
    await status.tick()  # the queue's size before the first webhook is let in
    reporting: asyncio.Task[None] | None = None
    try:
        listen = config.webhook.listen
        hook = GuardedSite(
            runner, listen.host, listen.port, limits=hook_limits, metrics=metrics, name="webhook"
        )
        listen = config.admin.listen
        admin = GuardedSite(
            admin_runner,
            listen.host,
            listen.port,
            limits=admin_limits,
            metrics=metrics,
            name="admin",
        )
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
        # Both listeners bound and the journal open: only now is the service "up".
        notify.notify("READY=1", f"STATUS={status.status()}")
        reporting = asyncio.create_task(status.run(), name="cxstream-status")
        await stop.wait()
        notify.notify("STOPPING=1", "STATUS=stopping: draining webhooks, checkpointing streams")
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
        if reporting is not None:
            reporting.cancel()
        await admin_runner.cleanup()
        await runner.cleanup()
    audit.info("daemon.stopped")


async def run(
    config: Config, audit: AuditLog, reopen_audit: Callable[[], None] | None = None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    notify = SdNotify()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, _reload, notify, reopen_audit)
    # From the first moment to the last: a start or a stop that hangs is a hang too.
    watchdog = asyncio.create_task(notify.watchdog(), name="cxstream-watchdog")
    try:
        await serve(config, audit, stop, notify)
    finally:
        watchdog.cancel()
        notify.close()


def _reload(notify: SdNotify, reopen_audit: Callable[[], None] | None) -> None:
    """SIGHUP (``systemctl reload``, logrotate): reopen the audit file, nothing else."""
    notify.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")
    try:
        if reopen_audit is not None:
            reopen_audit()
    except OSError as exc:
        # Keep writing to the old file rather than lose lines; say why on stderr.
        log.error("cannot reopen the audit file: %s", exc.strerror)
    finally:
        notify.notify("READY=1")
