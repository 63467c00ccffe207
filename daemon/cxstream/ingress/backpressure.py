"""Back-pressure: past ``streams.max_queued`` waiting jobs, webhooks get 503 + Retry-After.

The count is kept in memory, never queried per request: a refresher sets it
from the journal every second (one indexed COUNT, ``refresh``), and each 202
adds one at once, so a burst between two refreshes cannot overshoot the cap.
A middleware rather than a line in the handler: the webhook's own checks
stay where they are, and the refusal costs no body read and no signature check.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from cxstream.ingress.webhook import _reject
from cxstream.journal import Journal


@dataclass
class Admission:
    max_queued: int  # 0: no cap
    queued: int = 0
    oldest_at: float | None = None  # when the longest-waiting job was queued

    @property
    def full(self) -> bool:
        return 0 < self.max_queued <= self.queued

    async def refresh(self, journal: Journal) -> None:
        self.queued, self.oldest_at = await journal.queued()


ADMISSION = web.AppKey("admission", Admission)


@web.middleware
async def queue_cap(request: web.Request, handler: Handler) -> web.StreamResponse:
    admission = request.app[ADMISSION]
    if admission.full and request.method == "POST":
        return _reject(request, 503, "queue full")
    response = await handler(request)
    if response.status == 202:
        admission.queued += 1
    return response
