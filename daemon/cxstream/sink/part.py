"""The part file: a recording being written, under a name no reader trusts.

It lives in the final directory (so publishing is one rename on one
filesystem) as ``.<recordingId>.<ext>.part``: a fixed name, so that after a
crash the next attempt finds it and resumes from the journal's checkpoint.
Two hashes run as bytes land: the current batch's (checked against the
response's ``Repr-Digest``) and the whole source's (checked against the
metadata). Restarting a batch rolls both back to the batch's first byte.

Nothing here follows a link (see ``safe_fs``): the directory is held open by
fd from creation to publication, the part is created ``O_EXCL|O_NOFOLLOW``,
and publication (``publish.py``) never replaces an existing file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiofiles
from aiofiles.threadpool.binary import AsyncBufferedIOBase

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

from cxstream.formats.registry import Format, StreamCheck
from cxstream.sink import safe_fs
from cxstream.sink.publish import Published, place

_REHASH_CHUNK = 1024 * 1024
log = logging.getLogger(__name__)
# Chunks arrive at whatever size the network hands over (often 16 KiB); each
# aiofiles call is a hop to a thread, so they are coalesced to this size.
_WRITE_COALESCE = 256 * 1024


class ContainerError(ValueError):
    """The bytes break their container format (an Ogg page, a PCM sample)."""


def _sha() -> Hash:
    return hashlib.sha256()


class PartFile:
    """``root`` is where the operator's tree starts (``storage.dir``): the
    directories between it and the file are never followed if they are links."""

    def __init__(self, final_path: Path, fmt: Format, root: Path | None = None) -> None:
        self.final_path = final_path
        self.root = final_path.parent if root is None else root
        self.path = final_path.with_name(f".{final_path.name}.part")
        self.fmt = fmt
        self.codec = fmt.name
        self.data_start = fmt.header_bytes
        self._dir: int | None = None
        self._ident: safe_fs.Ident | None = None
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

    def _open_dir(self, create: bool) -> int:
        if self._dir is None:
            parts = safe_fs.relative_parts(self.root, self.final_path.parent)
            self._dir = safe_fs.open_dir(self.root, parts, create=create)
        return self._dir

    async def _adopt(self, fd: int) -> None:
        try:
            self._ident = safe_fs.ident(os.fstat(fd))
            self._fh = await aiofiles.open(fd, "r+b")
        except BaseException:
            os.close(fd)
            raise

    async def create(self) -> None:
        """A new, empty part (a stale part of ours is replaced; anything else refused)."""

        def _create() -> int:
            return safe_fs.create_exclusive(self._open_dir(create=True), self.path.name)

        await self._adopt(await asyncio.to_thread(_create))
        if self.data_start:
            # Placeholder: the real sizes are only known once the last byte is in.
            await self._file.write(self.fmt.header(0))
        self.position = self.batch_start = self._flushed = self.data_start
        self._source = _sha()
        self.begin_batch()

    async def resume(self, batch_start: int, offset: int) -> bool:
        """Reopen after a crash, keeping [data_start, offset); False if the file can't serve."""

        def _open() -> tuple[int, int] | None:
            try:
                fd = safe_fs.open_ours(self._open_dir(create=False), self.path.name)
            except FileNotFoundError:
                return None
            st = os.fstat(fd)
            if st.st_nlink != 1:
                # Also linked elsewhere: a crash between publication's link and
                # its unlink. Writing here would change the published file.
                os.close(fd)
                return None
            return fd, st.st_size

        opened = await asyncio.to_thread(_open)
        if opened is None:
            return False
        fd, size = opened
        if not self.data_start <= batch_start <= offset <= size:
            os.close(fd)
            return False
        await self._adopt(fd)
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

    def fileno(self) -> int:
        """The open part's descriptor: to read what we wrote, whatever its name holds now."""
        return self._file.fileno()

    async def close(self) -> None:
        if self._fh is not None:
            try:
                await self._flush()
            finally:
                await self._fh.close()
                self._fh = None
        if self._dir is not None:
            os.close(self._dir)
            self._dir = None

    async def discard(self) -> None:
        """Close and remove the part, if what is at its name is still ours."""
        mine, self._ident = self._ident, None

        def _remove() -> None:
            try:
                removed = safe_fs.unlink_if(self._open_dir(create=False), self.path.name, mine)
            except FileNotFoundError:
                return
            except safe_fs.UnsafePath as exc:
                # A failure path: say so, leave the thing alone, carry on failing.
                log.warning("part file %s not removed: %s", self.path, exc)
                return
            if not removed and mine is not None:
                log.warning("part file %s not removed: no longer the file we wrote", self.path)

        try:
            if self._fh is not None:
                await self._fh.close()
                self._fh = None
            await asyncio.to_thread(_remove)
        finally:
            await self.close()

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
        size = (await asyncio.to_thread(os.fstat, self._file.fileno())).st_size
        if size != self.position:
            raise ContainerError(f"part file holds {size} bytes, expected {self.position}")
        whole, source = _sha(), _sha()
        await self._hash_range(0, self.data_start, whole)
        await self._hash_range(self.data_start, self.position, whole, source)
        if source.hexdigest() != self._source.hexdigest():
            raise ContainerError("bytes on disk differ from the bytes verified")
        return whole.hexdigest()

    async def publish(self, sha256: str, recording_id: str) -> Published:
        """Give the sealed part its final name without replacing anything there.

        Identical bytes already under the name: nothing is rewritten. Other
        bytes (or not a file): the recording goes under a conflict name and the
        result says which file it met. See ``publish.place``.
        """
        await self._flush()
        assert self._dir is not None and self._ident is not None
        held, mine = self._dir, self._ident
        parts = safe_fs.relative_parts(self.root, self.final_path.parent)
        name, ext = self.path.name, self.final_path.suffix.lstrip(".")

        def _publish() -> Published:
            # The directory must still be where the path says: the announcement
            # and the sidecar name this path, and nothing may reach it through a link.
            os.close(safe_fs.reopen_dir(self.root, parts, safe_fs.ident(os.fstat(held))))
            return place(held, self.final_path.parent, name, mine, recording_id, ext, sha256)

        published = await asyncio.to_thread(_publish)
        # Published: the part's name is gone, a later discard() must not touch the file.
        self._ident = None
        await self.close()
        return published
