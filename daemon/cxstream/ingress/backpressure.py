"""Back-pressure: past ``streams.max_queued`` waiting jobs, webhooks get 503 + Retry-After.

The count lives in memory: each 202 adds one at once (a burst cannot overshoot
the cap), and the journal corrects it (one indexed COUNT, ``refresh``) once a
second, and again when a webhook would be refused (at most every
``recount_s`` while nothing was accepted): the gate reopens as soon as a
worker takes a job, without a COUNT for every refused request of a flood.
The cap holds up to the webhooks in flight at the same moment.

The webhook asks after its cheap refusals (peer, drain, type, a credential in
the headers) and before it reads a body: a stranger learns nothing of the
queue, and a refusal costs no body read and no signature check.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from aiohttp import web

from cxstream.journal import Journal, JournalError


@dataclass
class Admission:
    max_queued: int  # 0: no cap
    queued: int = 0
    oldest_at: float | None = None  # when the longest-waiting job was queued
    recount_s: float = 0.1
    _counted_at: float = field(default=float("-inf"), repr=False)
    _recount: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def full(self) -> bool:
        return 0 < self.max_queued <= self.queued

    async def refresh(self, journal: Journal) -> None:
        started = time.monotonic()
        self.queued, self.oldest_at = await journal.queued()
        self._counted_at = started

    def accepted(self) -> None:
        self.queued += 1
        # The count now includes a guess: the next refusal must ask the journal.
        self._counted_at = float("-inf")

    async def recount(self, journal: Journal) -> None:
        """A fresh count unless one is recent; concurrent callers share one query."""
        if time.monotonic() - self._counted_at < self.recount_s:
            return
        if self._recount is None or self._recount.done():
            self._recount = asyncio.create_task(self._refresh_quietly(journal))
        await asyncio.shield(self._recount)

    async def _refresh_quietly(self, journal: Journal) -> None:
        with contextlib.suppress(JournalError):  # keep the last count: never open on doubt
            await self.refresh(journal)


ADMISSION = web.AppKey("admission", Admission)


async def queue_full(admission: Admission, journal: Journal) -> bool:
    """True when the cap is reached, after a fresh count if the last is stale."""
    if not admission.full:
        return False
    await admission.recount(journal)
    return admission.full
