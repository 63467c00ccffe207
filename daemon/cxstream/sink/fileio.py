"""The part file's blocking work, one thread call per step, kept in order.

Hashing is most of what archiving costs (sha256 runs at ~1.9 GB/s on a
core with SHA-NI, and every byte is hashed two or three times). hashlib
releases the GIL for buffers over 2 KiB, so hashing in the same thread call
as the write takes it off the event loop and onto another core, and one call
per ~1 MiB costs one thread hop instead of one per step.

``Lane`` runs one file's steps one after another. A step, once submitted,
finishes even if the coroutine awaiting it is cancelled: the caller's
bookkeeping (position, what is pending) was updated before the await on the
promise that it would. The next step waits for it, and inherits its error
if nobody was left to hear it, so no failure is lost to a cancellation.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
# The read-back's buffer: small enough to stay in L2 while two digests read it.
READ_CHUNK = 256 * 1024


class Feed(Protocol):
    """A digest or a streaming check: anything bytes are fed to."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...


class ShortFile(OSError):
    """The file ends before the range asked for."""


def write_hashed(fd: int, chunks: Sequence[bytes], offset: int, feeds: Sequence[Feed]) -> None:
    """Write ``chunks`` at ``offset`` (all of them, or raise) and feed each to every feed."""
    _pwrite_all(fd, chunks, offset)
    for chunk in chunks:
        for feed in feeds:
            feed.update(chunk)


def _pwrite_all(fd: int, chunks: Sequence[bytes], offset: int) -> None:
    total = sum(len(c) for c in chunks)
    done = os.pwritev(fd, chunks, offset) if chunks else 0
    if done < total:
        # A short write (a signal, a filesystem's limit): finish it plainly.
        rest = memoryview(b"".join(chunks))[done:]
        while rest:
            n = os.pwrite(fd, rest, offset + done)
            done, rest = done + n, rest[n:]


def read_hashed(fd: int, start: int, end: int, *routes: tuple[int, Sequence[Feed]]) -> None:
    """Read the file's bytes [start, end) once and feed them along ``routes``.

    A route ``(from_offset, feeds)`` gets the bytes from ``from_offset`` on:
    the WAV header goes to the file's digest only, the samples after it to
    the file's and the source's. ``ShortFile`` if the file ends early.
    """
    buf = bytearray(min(READ_CHUNK, max(end - start, 1)))
    view = memoryview(buf)
    pos = start
    while pos < end:
        n = os.preadv(fd, [view[: min(len(buf), end - pos)]], pos)
        if n == 0:
            raise ShortFile(f"file ends {end - pos} bytes early")
        for begin, feeds in routes:
            if pos + n > begin:
                part = view[max(begin - pos, 0) : n]
                for feed in feeds:
                    feed.update(part)
        pos += n


class Lane:
    """One file's blocking steps, run in the default executor one at a time."""

    def __init__(self) -> None:
        self._last: asyncio.Future[Any] | None = None

    @property
    def busy(self) -> bool:
        """A step is submitted whose outcome nobody has seen yet."""
        return self._last is not None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        await self.drain()
        fut = asyncio.get_running_loop().run_in_executor(None, fn, *args)
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
