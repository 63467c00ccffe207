"""Quarantine: bytes that never verified, kept for forensics, never under ``storage.dir``.

An archive must not hold them (a reader would trust a final name), and an
operator must still be able to show CXone support what was served. The
quarantine lives in ``storage.state_dir``, beside the journal, so it is
bounded: per job by what the job could legitimately hold, in total by
``storage.quarantine_max_bytes`` (oldest entries evicted first), and it never
eats the last ``storage.quarantine_min_free_bytes`` of the filesystem (then
only the reason file is kept). The journal must never fail because evidence
filled its disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from cxstream.config import StorageConfig
from cxstream.sink import safe_fs
from cxstream.sink.part import ContainerError, PartFile

QUARANTINE_DIR = "quarantine"
REASON_SUFFIX = ".reason.json"
# Room for container framing and headers beyond the metadata's size.
MARGIN_BYTES = 64 * 1024
_COPY_CHUNK = 1024 * 1024
# Reserved for the reason file when making room.
_REASON_BYTES = 4096
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Quarantined:
    path: Path  # the evidence, or the reason file when no byte was kept
    bytes: int  # evidence kept
    bytes_dropped: bool  # none kept: the filesystem is low, or a write failed
    evicted: int  # older entries removed to make room


def evidence_cap(expected: int | None, cfg: StorageConfig) -> int:
    """The most evidence one job may keep: what it could hold, plus a margin."""
    if expected is None:
        per_job = cfg.quarantine_job_max_bytes
    else:
        per_job = expected + MARGIN_BYTES + expected // 100
    return min(per_job, cfg.quarantine_max_bytes - _REASON_BYTES)


class Quarantine:
    def __init__(self, cfg: StorageConfig) -> None:
        self.cfg = cfg
        # One job at a time: eviction sums the whole folder.
        self._lock = asyncio.Lock()

    async def keep(
        self,
        part: PartFile,
        recording_id: str,
        reason: str,
        attempts: int,
        expected: int | None = None,
    ) -> Quarantined | None:
        """Set the part's bytes aside (bounded) with a reason file; the part is removed.

        None when not even the reason file could be written (said on stderr):
        the job still fails as it should, quarantine is only evidence.
        """
        size = part.position
        doc = {
            "recordingId": recording_id,
            "reason": reason,
            "codec": part.codec,
            "partBytes": size,
            "failedBatchStart": part.batch_start,
            "attempts": attempts,
        }
        ext = part.final_path.suffix
        try:
            fd = None
            if part.is_open:
                try:
                    await part.sync()
                    fd = part.fileno()
                except (OSError, ContainerError):
                    fd = None  # the bytes cannot be trusted: keep the reason file alone
            async with self._lock:
                return await asyncio.to_thread(
                    self._keep, fd, size, evidence_cap(expected, self.cfg), recording_id, ext, doc
                )
        except (OSError, safe_fs.UnsafePath) as exc:
            log.error("cannot quarantine %s: %s", recording_id, exc)
            return None
        finally:
            await part.discard()

    def _keep(
        self,
        src: int | None,
        size: int,
        cap: int,
        recording_id: str,
        ext: str,
        doc: dict[str, object],
    ) -> Quarantined:
        folder = self.cfg.state_dir / QUARANTINE_DIR
        dir_fd = safe_fs.open_dir(self.cfg.state_dir, (QUARANTINE_DIR,), create=True)
        try:
            want = min(size, cap) if src is not None else 0
            evicted = _evict(dir_fd, self.cfg.quarantine_max_bytes - want - _REASON_BYTES)
            vfs = os.fstatvfs(dir_fd)
            if vfs.f_bavail * vfs.f_frsize - want < self.cfg.quarantine_min_free_bytes:
                want = 0
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            name = f"{recording_id}.{stamp}{ext}"
            kept = 0
            if want:
                assert src is not None
                try:
                    kept = _copy(src, dir_fd, name, want)
                except OSError as exc:
                    # ENOSPC from a neighbour's write: keep the reason, not half the bytes.
                    log.warning("quarantine of %s keeps no bytes: %s", recording_id, exc.strerror)
                    safe_fs.unlink_if(dir_fd, name, None)
            doc |= {
                "bytes": kept,
                "truncated": 0 < kept < size,
                "bytesDropped": kept == 0 and size > 0,
                "quarantinedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            }
            reason_name = name + REASON_SUFFIX
            if not safe_fs.write_new(
                dir_fd, reason_name, orjson.dumps(doc, option=orjson.OPT_INDENT_2)
            ):
                raise safe_fs.UnsafePath(f"{reason_name} already exists")
            path = folder / (name if kept else reason_name)
            return Quarantined(path, kept, bool(doc["bytesDropped"]), evicted)
        finally:
            os.close(dir_fd)


def _copy(src: int, dir_fd: int, name: str, count: int) -> int:
    """The first ``count`` bytes of ``src`` into a new file ``name``, fsynced.

    Read from our own open part, never by its name: what is copied is what we
    wrote, whatever has been put at the part's name since.
    """
    out = safe_fs.create_exclusive(dir_fd, name)
    try:
        done = 0
        while done < count:
            chunk = os.pread(src, min(_COPY_CHUNK, count - done), done)
            if not chunk:
                break
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view) :]
            done += len(chunk)
        os.fsync(out)
        return done
    finally:
        os.close(out)


def _evict(dir_fd: int, budget: int) -> int:
    """Remove the oldest entries (evidence and reason together) until the folder
    holds at most ``budget`` bytes; how many entries went. Only our regular files
    count or go: a link or a directory planted here is neither followed nor removed."""
    entries: dict[str, list[tuple[str, os.stat_result]]] = {}
    for entry in os.scandir(dir_fd):
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
            entries.setdefault(entry.name.removesuffix(REASON_SUFFIX), []).append((entry.name, st))
    total = sum(st.st_size for files in entries.values() for _, st in files)
    oldest = sorted(entries.values(), key=lambda files: min(st.st_mtime for _, st in files))
    evicted = 0
    for files in oldest:
        if total <= budget:
            break
        for name, st in files:
            if safe_fs.unlink_if(dir_fd, name, safe_fs.ident(st)):
                total -= st.st_size
        evicted += 1
    if evicted:
        os.fsync(dir_fd)
    return evicted
