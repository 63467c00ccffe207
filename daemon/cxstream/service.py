"""Once a second: the queue count for back-pressure, and ``STATUS=`` for systemd.

``systemctl status cxstream`` then shows what an operator asks first (how
many streams run, how many jobs wait) without a scrape.
"""

from __future__ import annotations

import asyncio
import logging

from cxstream.ingress.backpressure import Admission
from cxstream.journal import Journal, JournalError
from cxstream.metrics import Metrics
from cxstream.sdnotify import SdNotify

REFRESH_S = 1.0
log = logging.getLogger(__name__)


class StatusReporter:
    def __init__(
        self, *, notify: SdNotify, journal: Journal, admission: Admission, metrics: Metrics
    ) -> None:
        self._notify = notify
        self._journal = journal
        self._admission = admission
        self._metrics = metrics
        self._sent = ""

    def status(self) -> str:
        active = self._metrics.registry.get_sample_value("cxstream_active_streams") or 0
        text = f"{int(active)} active streams, {self._admission.queued} queued jobs"
        return text + (" (queue full: webhooks get 503)" if self._admission.full else "")

    async def tick(self) -> None:
        try:
            await self._admission.refresh(self._journal)
        except JournalError as exc:
            # Keep the last count: a busy journal must not open the gate.
            log.warning("queue count unavailable: %s", exc)
        text = self.status()
        if text != self._sent and self._notify.notify(f"STATUS={text}"):
            self._sent = text

    async def run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(REFRESH_S)
