"""Publication without clobbering: a name that is taken is never replaced.

A recording and its sidecar are published as a pair of names,
``<id>.<ext>`` + ``<id>.json``. When that pair is taken by other content,
the pair ``<id>.conflict-<sha12>.<ext>`` + ``<id>.conflict-<sha12>.json``
(the first 12 hex digits of the published file's sha256) is used instead,
and the caller reports the conflict. A slot is free for us when:

- recording: nothing is there (we link our part to it), or a regular file
  with exactly our bytes (an earlier run of this job published it, then
  stopped before the journal said so): nothing is rewritten;
- sidecar: nothing is there, or a sidecar whose ``sha256`` is ours (written
  by that earlier run, for these very bytes): it is kept as it is, with its
  own timings. Anything else (another recording's sidecar, a link, a
  directory) makes the pair taken.

Both names taken by other content is an ``UnsafePath``: nothing is
published, nothing is replaced.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import orjson

from cxstream.sink import safe_fs
from cxstream.sink.safe_fs import UnsafePath

_SIDECAR_LIMIT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Conflict:
    """The file found under the name we wanted (left as it was)."""

    existing: Path
    existing_sha256: str | None  # None: not a regular file (a link, a directory)


@dataclass(frozen=True, slots=True)
class Published:
    path: Path
    sidecar: Path
    sha256: str
    # The sidecar already there describes these bytes: keep it, write none.
    keep_sidecar: bool
    conflict: Conflict | None
    directory: safe_fs.Ident


def conflict_stem(recording_id: str, sha256: str) -> str:
    return f"{recording_id}.conflict-{sha256[:12]}"


def _sidecar_is_ours(dir_fd: int, name: str, sha256: str) -> bool | None:
    """None: nothing there; True: a sidecar of these bytes; False: anything else."""
    if safe_fs.lstat(dir_fd, name) is None:
        return None
    raw = safe_fs.read_small(dir_fd, name, _SIDECAR_LIMIT)
    try:
        doc = orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and doc.get("sha256") == sha256


def place(
    dir_fd: int,
    directory: Path,
    part_name: str,
    mine: safe_fs.Ident,
    recording_id: str,
    ext: str,
    sha256: str,
) -> Published:
    """Link the part (inode ``mine``) to the first free pair of names; blocking."""
    conflict: Conflict | None = None
    for stem in (recording_id, conflict_stem(recording_id, sha256)):
        name, sidecar = f"{stem}.{ext}", f"{stem}.json"
        sidecar_ours = _sidecar_is_ours(dir_fd, sidecar, sha256)
        taken: str | None = None
        if sidecar_ours is False:
            taken, existing = sidecar, safe_fs.sha256_of(dir_fd, sidecar)
        elif not safe_fs.link_new(dir_fd, part_name, name, mine):
            existing = safe_fs.sha256_of(dir_fd, name)
            taken = None if existing == sha256 else name
        if taken is not None:
            conflict = conflict or Conflict(directory / taken, existing)
            continue
        safe_fs.unlink_if(dir_fd, part_name, mine)
        os.fsync(dir_fd)
        return Published(
            path=directory / name,
            sidecar=directory / sidecar,
            sha256=sha256,
            keep_sidecar=bool(sidecar_ours),
            conflict=conflict,
            directory=safe_fs.ident(os.fstat(dir_fd)),
        )
    raise UnsafePath(f"{recording_id}: its name and its conflict name are taken by other files")


async def write_sidecar(root: Path, published: Published, data: bytes) -> None:
    """The sidecar, beside the recording, never over an existing file."""

    def _write() -> None:
        parts = safe_fs.relative_parts(root, published.sidecar.parent)
        dir_fd = safe_fs.reopen_dir(root, parts, published.directory)
        try:
            if published.keep_sidecar:
                return
            name = published.sidecar.name
            if not safe_fs.write_new(dir_fd, name, data) and not _sidecar_is_ours(
                dir_fd, name, published.sha256
            ):
                raise UnsafePath(f"{name} appeared while the sidecar was being written")
        finally:
            os.close(dir_fd)

    await asyncio.to_thread(_write)
