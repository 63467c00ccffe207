"""The part file: a recording being written, under a name no reader trusts.

It lives in the final directory (so publishing is one rename on one
filesystem) as ``.<recordingId>.<ext>.part``: a fixed name, so that after a
crash the next attempt finds it and resumes from the journal's checkpoint.

What is checked where: the current batch's sha256 (against the response's
``Repr-Digest``) runs as bytes land, in the thread that writes them
(``fileio``). ``seal`` reads the finished file back and hashes what is on
disk: with the platform's sha256 of the whole source (``expect_sha256``) the
disk is held to it directly; without one, to a hash of the source kept as
bytes landed. Restarting a batch rolls the hashes back to its first byte.

Nothing here follows a link (see ``safe_fs``): the directory is held open by
fd from creation to publication, the part is created ``O_EXCL|O_NOFOLLOW``,
and publication (``publish.py``) never replaces an existing file.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

from cxstream.formats.registry import Format, StreamCheck
from cxstream.sink import safe_fs
from cxstream.sink.fileio import Feed, ShortFile, Spool, read_hashed, seal_file, write_hashed
from cxstream.sink.lane import Lane
from cxstream.sink.publish import Published, place

log = logging.getLogger(__name__)


class ContainerError(ValueError):
    """The bytes break their container format (an Ogg page, a PCM sample)."""


class SourceMismatch(ContainerError):
    """The source bytes read back are not the ones the platform's sha256 describes."""


def _sha() -> Hash:
    return hashlib.sha256()


class PartFile:
    """``root`` is where the operator's tree starts (``storage.dir``): the
    directories between it and the file are never followed if they are links.
    ``expect_sha256``: the platform's sha256 of the whole source, when known."""

    def __init__(
        self,
        final_path: Path,
        fmt: Format,
        root: Path | None = None,
        *,
        expect_sha256: str | None = None,
    ) -> None:
        self.final_path = final_path
        self.root = final_path.parent if root is None else root
        self.path = final_path.with_name(f".{final_path.name}.part")
        self.fmt = fmt
        self.codec = fmt.name
        self.data_start = fmt.header_bytes
        self.expect_sha256 = expect_sha256
        self._dir: int | None = None
        self._ident: safe_fs.Ident | None = None
        self._lane = Lane()
        # Bytes accepted but not yet in the file (the fd is the spool's).
        self._spool = Spool(self._lane)
        self.position = self.data_start
        self.batch_start = self.data_start
        # Without the platform's sha256, the source is hashed as it lands: the
        # read-back is held to that. With it, the read-back is held to the platform.
        self._source: Hash | None = None
        self._source_at_batch: Hash | None = None
        self._batch = _sha()
        self._check: StreamCheck = fmt.stream_check()
        self._synced = self.data_start
        self._sealed_source: str | None = None

    # -- lifecycle --------------------------------------------------------

    def _open_dir(self, create: bool) -> int:
        if self._dir is None:
            parts = safe_fs.relative_parts(self.root, self.final_path.parent)
            self._dir = safe_fs.open_dir(self.root, parts, create=create)
        return self._dir

    def _new_source(self) -> Hash | None:
        return _sha() if self.expect_sha256 is None else None

    def _adopt(self, at: int) -> None:
        self._spool.broken, self._sealed_source = None, None
        self._spool.reset(at)
        self.position = self.batch_start = self._synced = at
        self._source = self._new_source()

    async def create(self) -> None:
        """A new, empty part (a stale part of ours is replaced; anything else refused)."""
        header = self.fmt.header(0)

        def _create() -> None:
            # The fd is ours from here: a caller cancelled meanwhile still closes it.
            fd = self._spool.fd = safe_fs.create_exclusive(self._open_dir(True), self.path.name)
            self._ident = safe_fs.ident(os.fstat(fd))
            # Placeholder: the real sizes are only known once the last byte is in.
            write_hashed(fd, [header] if header else [], 0, ())

        await self._lane.run(_create)
        self._adopt(self.data_start)
        await self.begin_batch()

    async def resume(self, batch_start: int, offset: int) -> bool:
        """Reopen after a crash, keeping [data_start, offset); False if the file can't serve."""

        def _open() -> int | None:
            try:
                fd = safe_fs.open_ours(self._open_dir(create=False), self.path.name)
            except FileNotFoundError:
                return None
            st = os.fstat(fd)
            # nlink > 1: also linked elsewhere, a crash between publication's
            # link and its unlink. Writing here would change the published file.
            if st.st_nlink != 1 or not self.data_start <= batch_start <= offset <= st.st_size:
                os.close(fd)
                return None
            self._spool.fd, self._ident = fd, safe_fs.ident(st)
            # Bytes past the checkpoint were never fsynced as a unit: drop them.
            os.ftruncate(fd, offset)
            return fd

        fd = await self._lane.run(_open)
        if fd is None:
            return False
        self._adopt(batch_start)
        if self._source is not None:
            await self._lane.run(read_hashed, fd, self.data_start, batch_start, (0, [self._source]))
        await self.begin_batch()
        feeds: list[Feed] = [self._batch, self._check]
        if self._source is not None:
            feeds.append(self._source)
        try:
            await self._lane.run(read_hashed, fd, batch_start, offset, (0, feeds))
        except (ValueError, ShortFile):
            # What was durable no longer parses: drop the batch, keep the rest.
            await self.restart_batch()
            return True
        self.position = self._synced = offset
        self._spool.reset(offset)
        return True

    def _usable(self) -> int:
        if self._spool.fd is None:
            raise ContainerError("part file is not open")
        return self._spool.usable()

    async def _flush(self, *, fsync: bool = False) -> None:
        """What is held, hashed and written (and fsynced), in one thread call."""
        self._usable()
        feeds: list[Feed] = [self._batch]
        if self._source is not None:
            feeds.append(self._source)
        await self._spool.flush(feeds, fsync=fsync)

    async def settle(self) -> None:
        """Every accepted byte hashed and handed to the file (not yet fsynced)."""
        await self._flush()

    @property
    def is_open(self) -> bool:
        return self._spool.fd is not None

    def fileno(self) -> int:
        """The open part's descriptor: to read what we wrote, whatever its name holds now."""
        if self._spool.fd is None:
            raise ContainerError("part file is not open")
        return self._spool.fd

    def _let_go(self) -> None:
        """Close the fds once the lane's last step is done (never under it; a step
        still running may be the one opening them)."""

        def _close() -> None:
            fd, self._spool.fd = self._spool.fd, None
            held, self._dir = self._dir, None
            for each in (fd, held):
                if each is not None:
                    os.close(each)

        self._lane.after(_close)

    async def close(self) -> None:
        try:
            if self._spool.fd is not None:
                await self._flush()
        finally:
            self._let_go()

    async def discard(self) -> None:
        """Close and remove the part, if what is at its name is still ours."""
        mine, self._ident = self._ident, None
        self._spool.reset(self._spool.flushed)

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
            # An earlier step's error is moot: the bytes are going.
            await self._lane.drain(quiet=True)
            await self._lane.run(_remove)
        finally:
            self._let_go()

    # -- batches ----------------------------------------------------------

    async def begin_batch(self) -> None:
        await self._flush()
        self.batch_start = self.position
        self._source_at_batch = None if self._source is None else self._source.copy()
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
        fd, start = self._usable(), self.batch_start
        # Accounting first, as in _flush: the truncation runs whatever happens
        # here. Nothing held is older than the batch (begin_batch flushes).
        self._spool.reset(start)
        self.position = start
        self._synced = min(self._synced, start)
        self._sealed_source = None
        self._source = None if self._source_at_batch is None else self._source_at_batch.copy()
        self._batch = _sha()
        self._check = self.fmt.stream_check()
        await self._lane.run(os.ftruncate, fd, start)

    @property
    def batch_bytes(self) -> int:
        return self.position - self.batch_start

    @property
    def source_bytes_before_batch(self) -> int:
        return self.batch_start - self.data_start

    @property
    def source_bytes(self) -> int:
        return self.position - self.data_start

    @property
    def unsynced_bytes(self) -> int:
        """Bytes accepted since the last fsync: what a crash now could cost."""
        return self.position - self._synced

    async def batch_digest(self) -> bytes:
        await self._flush()
        return self._batch.digest()

    def source_sha256(self) -> str:
        """The sha256 of the source bytes on disk, as ``seal`` read them back."""
        if self._sealed_source is None:
            raise ContainerError("part file is not sealed")
        return self._sealed_source

    async def write(self, chunk: bytes) -> None:
        # Accounting before any await, so position, spool and the check
        # agree whatever is cancelled where; hashing happens in _flush's thread.
        self.position += len(chunk)
        due = self._spool.add(chunk)
        self._sealed_source = None
        try:
            # Checked as it lands. The part file is never trusted, so the bad
            # chunk may sit there: the batch restarts, or, if it never
            # verifies, the bytes go to quarantine as evidence.
            self._check.update(chunk)
        except ValueError as exc:
            raise ContainerError(str(exc)) from None
        if due:
            await self._flush()

    async def sync(self) -> None:
        at = self.position
        await self._flush(fsync=True)
        self._synced = at

    # -- publishing -------------------------------------------------------

    async def seal(self) -> str:
        """Final header, fsync, then read the file back: the sha256 of what is on disk.

        The read-back is the proof that the disk holds exactly the bytes that
        were verified (and the WAV header is only known now; sha256 cannot be
        prepended to). Raises SourceMismatch if the source read back is not
        what the platform's sha256 describes, ContainerError if it is not what
        was hashed as it landed.
        """
        await self._flush()
        fd, size = self._usable(), self.position
        header = self.fmt.header(self.source_bytes) if self.data_start else b""
        whole = _sha()
        # Opus: the file is the source, one digest serves both.
        source = _sha() if self.data_start else whole

        routes: list[tuple[int, list[Feed]]] = [(0, [whole])]
        if source is not whole:
            routes.append((self.data_start, [source]))
        try:
            on_disk = await self._lane.run(seal_file, fd, header, size, *routes)
        except ShortFile as exc:
            raise ContainerError(f"part file {exc}") from None
        if on_disk != size:
            raise ContainerError(f"part file holds {on_disk} bytes, expected {size}")
        self._synced = size
        read_back = source.hexdigest()
        if self.expect_sha256 is not None:
            if read_back != self.expect_sha256:
                raise SourceMismatch("the source on disk does not match the platform's sha256")
        elif self._source is None or read_back != self._source.hexdigest():
            raise ContainerError("bytes on disk differ from the bytes verified")
        self._sealed_source = read_back
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

        published = await self._lane.run(_publish)
        # Published: the part's name is gone, a later discard() must not touch the file.
        self._ident = None
        await self.close()
        return published
