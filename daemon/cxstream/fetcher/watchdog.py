"""The idle-ping watchdog: every chunk pings it; silence for ``idle`` seconds cuts the read.

Built on ``asyncio.timeout`` rescheduled per ping, so a healthy stream costs one
timer move per chunk and a stalled one is cancelled within the same loop turn
the deadline passes: no polling task, no total timeout on long recordings.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from cxstream.fetcher.errors import Stalled


class Watchdog:
    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self._timeout: asyncio.Timeout | None = None
        self._loop = asyncio.get_running_loop()

    def ping(self) -> None:
        """Arm (or re-arm) the deadline: call before every network read."""
        assert self._timeout is not None
        self._timeout.reschedule(self._loop.time() + self.idle_s)

    def pause(self) -> None:
        """Disarm while we do our own work (disk, journal): only the network can stall."""
        assert self._timeout is not None
        self._timeout.reschedule(None)

    async def __aenter__(self) -> Watchdog:
        self._timeout = asyncio.timeout(self.idle_s)
        await self._timeout.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._timeout is not None
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            if self._timeout.expired():
                raise Stalled("stalled") from None
            raise
