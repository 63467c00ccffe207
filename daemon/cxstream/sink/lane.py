"""One file's blocking steps, run in threads one after another, whatever is cancelled.

Each step goes to a worker thread through aiofiles (``aiofiles.os.wrap``, the
same executor hop its file objects make), one step per MiB of audio: the
step writes *and* hashes, so the hashing leaves the event loop too.

A step, once submitted, finishes even if the coroutine awaiting it is
cancelled: the caller's bookkeeping (position, what is pending) was updated
before the await on the promise that it would. (``asyncio.to_thread`` alone
does not keep it: a step still queued behind busy workers is dropped when its
caller is cancelled.) The next step waits for it, and inherits its error if
nobody was left to hear it, so no failure is lost to a cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import aiofiles.os

T = TypeVar("T")


class Lane:
    """One file's blocking steps, run in the default executor one at a time."""

    def __init__(self) -> None:
        self._last: asyncio.Future[Any] | None = None

    @property
    def busy(self) -> bool:
        """A step is submitted whose outcome nobody has seen yet."""
        return self._last is not None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        while self._last is not None:  # a third caller may slip in while we wait
            await self.drain()
        fut: asyncio.Future[T] = asyncio.ensure_future(aiofiles.os.wrap(fn)(*args))
        self._last = fut
        try:
            # Shielded: a cancelled caller leaves the step running, and in _last.
            result: T = await _observe(fut)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._last = None  # its caller hears it
            raise
        self._last = None
        return result

    async def drain(self, *, quiet: bool = False) -> None:
        """Wait for the last step; raise its error unless ``quiet`` (it is then seen)."""
        fut = self._last
        if fut is None:
            return
        try:
            await _observe(fut)
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._last = None
            if not quiet:
                raise
            return
        self._last = None

    def after(self, fn: Callable[..., object], *args: Any) -> None:
        """``fn(*args)`` once the last step is done (now if none runs): to close its fd
        without a cancellation in between, and never under a running step."""
        fut = self._last
        if fut is None or fut.done():
            fn(*args)
            return

        def done(f: asyncio.Future[Any]) -> None:
            if not f.cancelled():
                f.exception()  # seen here: the file is being let go
            fn(*args)

        fut.add_done_callback(done)


async def _observe(fut: asyncio.Future[T]) -> T:
    try:
        return await asyncio.shield(fut)
    except asyncio.CancelledError:
        if fut.done() and not fut.cancelled():
            # Finished as we were cancelled: mark its error retrieved (it stays
            # in _last for the next step to raise), so asyncio does not log it.
            fut.exception()
        raise
