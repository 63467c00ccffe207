"""The part file: a recording being written, under a name no reader trusts.

It lives in the final directory (so publishing is one rename on one
filesystem) as ``.<recordingId>.<ext>.part``: a fixed name, so that after a
crash the next attempt finds it and resumes from the journal's checkpoint.
Two hashes run as bytes land: the current batch's (checked against the
response's ``Repr-Digest``) and the whole source's (checked against the
metadata). Restarting a batch rolls both back to the batch's first byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiofiles
import aiofiles.os
from aiofiles.threadpool.binary import AsyncBufferedIOBase

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

from cxstream.formats.registry import Format, StreamCheck

_REHASH_CHUNK = 1024 * 1024
# Chunks arrive at whatever size the network hands over (often 16 KiB); each
# aiofiles call is a hop to a thread, so they are coalesced to this size.
_WRITE_COALESCE = 256 * 1024


class ContainerError(ValueError):
    """The bytes break their container format (an Ogg page, a PCM sample)."""


def _sha() -> Hash:
    return hashlib.sha256()


class PartFile:
    def __init__(self, final_path: Path, fmt: Format) -> None:
        self.final_path = final_path
        self.path = final_path.with_name(f".{final_path.name}.part")
        self.fmt = fmt
        self.codec = fmt.name
        self.data_start = fmt.header_bytes
        self.position = self.data_start
        self.batch_start = self.data_start
        self._fh: AsyncBufferedIOBase | None = None
        self._source = _sha()
        self._source_at_batch = _sha()
        self._batch = _sha()
        self._check: StreamCheck = fmt.stream_check()
        # Bytes accepted but not yet handed to the file, and where they go:
        # every write names its offset, so no write depends on where an
        # earlier (perhaps cancelled) one left the file pointer.
        self._pending = bytearray()
        self._flushed = self.data_start

    # -- lifecycle --------------------------------------------------------

    async def create(self) -> None:
        await aiofiles.os.makedirs(self.path.parent, exist_ok=True)
        self._fh = await aiofiles.open(self.path, "w+b")
        if self.data_start:
            # Placeholder: the real sizes are only known once the last byte is in.
            await self._file.write(self.fmt.header(0))
        self.position = self.batch_start = self._flushed = self.data_start
        self._source = _sha()
        self.begin_batch()

    async def resume(self, batch_start: int, offset: int) -> bool:
        """Reopen after a crash, keeping [data_start, offset); False if the file can't serve."""
        try:
            size = (await aiofiles.os.stat(self.path)).st_size
        except FileNotFoundError:
            return False
        if not self.data_start <= batch_start <= offset <= size:
            return False
        self._fh = await aiofiles.open(self.path, "r+b")
        # Bytes past the checkpoint were never fsynced as a unit: drop them.
        await self._file.truncate(offset)
        self._flushed = offset
        self._source = _sha()
        await self._hash_range(self.data_start, batch_start, self._source)
        self.position = batch_start
        self.begin_batch()
        try:
            await self._hash_range(batch_start, offset, self._batch, self._source, self._check)
        except ValueError:
            # What was durable no longer parses: drop the batch, keep the rest.
            await self.restart_batch()
            return True
        self.position = offset
        return True

    async def _flush(self) -> None:
        if self._pending:
            data, offset = bytes(self._pending), self._flushed
            # State first: a cancellation during the awaits below leaves the
            # accounting right (the thread finishes the write regardless).
            self._pending, self._flushed = bytearray(), offset + len(data)
            await self._file.seek(offset)
            await self._file.write(data)

    async def _hash_range(self, start: int, end: int, *digests: Hash | Any) -> None:
        """Feed the file's bytes [start, end) to ``digests``; a short file is an error."""
        await self._flush()
        await self._file.seek(start)
        remaining = end - start
        while remaining > 0:
            chunk = await self._file.read(min(_REHASH_CHUNK, remaining))
            if not chunk:
                raise ContainerError(f"part file ends {remaining} bytes early")
            for digest in digests:
                digest.update(chunk)
            remaining -= len(chunk)

    @property
    def _file(self) -> AsyncBufferedIOBase:
        if self._fh is None:
            raise ContainerError("part file is not open")
        return self._fh

    @property
    def is_open(self) -> bool:
        return self._fh is not None

    async def close(self) -> None:
        if self._fh is not None:
            await self._flush()
            await self._fh.close()
            self._fh = None

    async def discard(self) -> None:
        await self.close()
        with contextlib.suppress(FileNotFoundError):
            await aiofiles.os.remove(self.path)

    # -- batches ----------------------------------------------------------

    def begin_batch(self) -> None:
        self.batch_start = self.position
        self._source_at_batch = self._source.copy()
        self._batch = _sha()
        self._check = self.fmt.stream_check()

    def end_batch(self) -> None:
        """The batch is all here: its container must be complete (raises ContainerError)."""
        try:
            self._check.finish()
        except ValueError as exc:
            raise ContainerError(str(exc)) from None

    async def restart_batch(self) -> None:
        """Forget everything the current batch wrote (a 200 to a resume, a bad digest)."""
        await self._flush()
        await self._file.truncate(self.batch_start)
        self.position = self._flushed = self.batch_start
        self._source = self._source_at_batch.copy()
        self._batch = _sha()
        self._check = self.fmt.stream_check()

    @property
    def batch_bytes(self) -> int:
        return self.position - self.batch_start

    @property
    def source_bytes_before_batch(self) -> int:
        return self.batch_start - self.data_start

    @property
    def source_bytes(self) -> int:
        return self.position - self.data_start

    def batch_digest(self) -> bytes:
        return self._batch.digest()

    def source_sha256(self) -> str:
        return self._source.hexdigest()

    async def write(self, chunk: bytes) -> None:
        # Accounting before any await, so hashes, position and bytes agree
        # whatever is cancelled where.
        self._batch.update(chunk)
        self._source.update(chunk)
        self.position += len(chunk)
        self._pending += chunk
        try:
            # Checked as it lands. The part file is never trusted, so the bad
            # chunk may sit there: the batch restarts, or, if it never
            # verifies, the bytes go to quarantine as evidence.
            self._check.update(chunk)
        except ValueError as exc:
            raise ContainerError(str(exc)) from None
        if len(self._pending) >= _WRITE_COALESCE:
            await self._flush()

    async def sync(self) -> None:
        await self._flush()
        await self._file.flush()
        await asyncio.to_thread(os.fsync, self._file.fileno())

    # -- publishing -------------------------------------------------------

    async def seal(self) -> str:
        """Final header, fsync, then read the file back: the sha256 of what is on disk.

        The read-back is the proof that the disk holds exactly the bytes that
        were verified as they streamed (and the WAV header is only known now;
        sha256 cannot be prepended to). Raises ContainerError if it does not.
        """
        await self._flush()
        if self.data_start:
            await self._file.seek(0)
            await self._file.write(self.fmt.header(self.source_bytes))
        await self.sync()
        size = (await aiofiles.os.stat(self.path)).st_size
        if size != self.position:
            raise ContainerError(f"part file holds {size} bytes, expected {self.position}")
        whole, source = _sha(), _sha()
        await self._hash_range(0, self.data_start, whole)
        await self._hash_range(self.data_start, self.position, whole, source)
        if source.hexdigest() != self._source.hexdigest():
            raise ContainerError("bytes on disk differ from the bytes verified")
        return whole.hexdigest()

    async def publish(self) -> None:
        await self.close()
        await aiofiles.os.replace(self.path, self.final_path)
        await fsync_dir(self.final_path.parent)


async def fsync_dir(path: Path) -> None:
    def _sync() -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    await asyncio.to_thread(_sync)


async def write_atomic(path: Path, data: bytes) -> None:
    """Small files (the sidecar): temp name, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.part")
    async with aiofiles.open(tmp, "wb") as fh:
        await fh.write(data)
        await fh.flush()
        await asyncio.to_thread(os.fsync, fh.fileno())
    await aiofiles.os.replace(tmp, path)
    await fsync_dir(path.parent)
