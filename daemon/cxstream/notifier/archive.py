"""Deliver the journal's outbox to ``archive.url``, signed, until each gets a 2xx.

The outbox row is written in the same transaction that completes the job, so
an announcement cannot be lost between "file published" and "sink told"; its
webhook-id is fixed at that moment and reused on every retry, which is what
lets the sink deduplicate. This loop is separate from the stream workers: a
slow or dead sink never holds up a download.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime

import aiohttp
from standardwebhooks.webhooks import Webhook

from cxstream.audit import AuditLog
from cxstream.config import ArchiveConfig
from cxstream.fetcher.errors import Backoff
from cxstream.journal import Announcement, Journal, JournalError
from cxstream.metrics import Metrics

_BATCH = 16
_IDLE_POLL_S = 5.0
log = logging.getLogger(__name__)


class ArchiveNotifier:
    def __init__(
        self,
        *,
        config: ArchiveConfig,
        journal: Journal,
        session: aiohttp.ClientSession,
        audit: AuditLog,
        metrics: Metrics,
    ) -> None:
        assert config.secret is not None
        self._config = config
        self._journal = journal
        self._session = session
        self._audit = audit
        self._metrics = metrics
        self._signer = Webhook(config.secret.reveal())
        self._backoff = Backoff(config.backoff_base_s, config.backoff_cap_s)
        self._wake = asyncio.Event()
        self._reported_at = 0.0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                due = await self._journal.due_announcements(time.time(), _BATCH)
            except JournalError as exc:
                log.error("journal unavailable to the notifier: %s", exc)
                due = []
            for announcement in due:
                try:
                    await self._deliver(announcement)
                except JournalError as exc:
                    # The row stays undelivered in the journal: it is retried.
                    log.error("journal unavailable to the notifier: %s", exc)
                except Exception:
                    # Never let one announcement end the loop that delivers all.
                    log.exception("announcement %s failed", announcement.webhook_id)
                    await asyncio.sleep(_IDLE_POLL_S)  # no hot loop on a poison row
            with contextlib.suppress(JournalError):
                await self._report_backlog()
            if len(due) == _BATCH:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(await self._next_wait()):
                    await self._wake.wait()

    async def _report_backlog(self) -> None:
        """Undelivered announcements are never silent: a gauge always, and a line
        every ``backlog_report_s`` while one has waited at least that long (a
        healthy sink, answering within seconds, never causes one)."""
        pending, oldest = await self._journal.backlog()
        self._metrics.backlog.set(pending)
        now = time.time()
        every = self._config.backlog_report_s
        if pending and now - (oldest or now) >= every and now - self._reported_at >= every:
            self._reported_at = now
            self._audit.warning(
                "archive.backlog",
                pending=pending,
                oldest_age_s=round(now - (oldest or now), 3),
            )

    async def _next_wait(self) -> float:
        try:
            next_at = await self._journal.next_announcement_at()
        except JournalError:
            return _IDLE_POLL_S
        if next_at is None:
            return _IDLE_POLL_S
        return min(_IDLE_POLL_S, max(0.0, next_at - time.time()))

    async def _deliver(self, item: Announcement) -> None:
        body = item.body.decode()
        now = datetime.now(UTC)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": item.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(item.webhook_id, now, body),
        }
        started = time.monotonic()
        try:
            async with self._session.post(
                self._config.url,
                data=item.body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self._config.timeout_s),
                allow_redirects=False,
            ) as resp:
                status: int | None = resp.status
                error = None if 200 <= resp.status < 300 else f"http_{resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            status, error = None, f"unreachable: {exc.__class__.__name__}"
        latency_ms = round((time.monotonic() - started) * 1000, 1)
        attempts = item.attempts + 1
        if error is None:
            await self._journal.delivered(item.id)
            self._metrics.archive.labels(outcome="delivered").inc()
            self._audit.info(
                "archive.delivered",
                recording_id=item.recording_id,
                webhook_id=item.webhook_id,
                status=status,
                attempts=attempts,
                latency_ms=latency_ms,
            )
            return
        delay = self._backoff.delay(attempts)
        await self._journal.reschedule(item.id, attempts, time.time() + delay, error)
        self._metrics.archive.labels(outcome="retry").inc()
        self._audit.warning(
            "archive.retry",
            recording_id=item.recording_id,
            webhook_id=item.webhook_id,
            status=status,
            error=error,
            attempts=attempts,
            delay_s=round(delay, 3),
            latency_ms=latency_ms,
        )
