"""The part file's blocking work: one thread call per step, hashing where bytes are written.

Hashing is most of what archiving costs (sha256 runs at ~1.9 GB/s on a
core with SHA-NI, and every byte is hashed two or three times). hashlib
releases the GIL for buffers over 2 KiB, so hashing in the same thread call
as the write takes it off the event loop and onto another core, and one call
per run of bytes costs one thread hop instead of one per step. ``Spool``
gathers those runs; the steps run in the file's ``Lane``, in order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Protocol

from cxstream.sink.lane import Lane

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


def seal_file(fd: int, header: bytes, size: int, *routes: tuple[int, Sequence[Feed]]) -> int:
    """The final header at offset 0, fsync, then the file read back along ``routes``.

    Returns the size on disk; nothing is read back when it is not ``size``.
    """
    write_hashed(fd, [header] if header else [], 0, ())
    os.fsync(fd)
    on_disk = os.fstat(fd).st_size
    if on_disk == size:
        read_hashed(fd, 0, size, *routes)
    return on_disk


# Bytes go to the writing thread in runs: a fast stream's every MiB (one hop
# per MiB), a slow one's once it holds 64 KiB for a second, so 500 trickling
# streams hold ~64 KiB each, not a MiB. (IOV_MAX bounds the chunks of a run.)
RUN_BYTES = 1024 * 1024
HOLD_BYTES = 64 * 1024
HOLD_S = 1.0
_MAX_CHUNKS = 512


class Spool:
    """A file's bytes between the network and the disk, and where each run goes.

    Every run names its offset, so no write depends on where an earlier
    (perhaps cancelled) one left the file pointer. A failed write leaves the
    caller's accounting ahead of the file: the spool is then broken for good,
    and nothing may fsync and call those bytes durable.
    """

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self.fd: int | None = None
        self.clock = time.monotonic  # for the slow-stream rule; a test may turn it
        self.broken: OSError | None = None
        self.reset(0)

    def reset(self, at: int) -> None:
        """Nothing held; the next byte goes to offset ``at``."""
        self._chunks: list[bytes] = []
        self._bytes = 0
        self._since = 0.0
        self.flushed = at

    def add(self, chunk: bytes) -> bool:
        """Hold ``chunk``; True when a run is due."""
        if not self._chunks:
            self._since = self.clock()
        self._chunks.append(chunk)
        self._bytes += len(chunk)
        held = self._bytes
        return (
            held >= RUN_BYTES
            or len(self._chunks) >= _MAX_CHUNKS
            or (held >= HOLD_BYTES and self.clock() - self._since >= HOLD_S)
        )

    def usable(self) -> int:
        """The fd, unless a write failed (OSError, its errno) or nothing is open (None)."""
        if self.broken is not None:
            exc = self.broken
            raise OSError(exc.errno, f"part file unusable after a failed write: {exc.strerror}")
        if self.fd is None:
            raise ValueError("part file is not open")
        return self.fd

    async def flush(self, feeds: Sequence[Feed], *, fsync: bool = False) -> None:
        """Hand what is held to the lane (written, fed to ``feeds``, perhaps fsynced)."""
        fd = self.usable()
        chunks, offset = self._chunks, self.flushed
        # State first: a cancellation during the await leaves the accounting
        # right (the lane finishes the step regardless).
        self.reset(offset + self._bytes)
        if chunks or fsync:
            await self.lane.run(self._write, fd, chunks, offset, feeds, fsync)
        else:
            await self.lane.drain()

    def _write(
        self, fd: int, chunks: list[bytes], offset: int, feeds: Sequence[Feed], fsync: bool
    ) -> None:
        try:
            write_hashed(fd, chunks, offset, feeds)
            if fsync:
                os.fsync(fd)
        except OSError as exc:
            self.broken = exc
            raise
