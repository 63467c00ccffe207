"""The spool at start: part files of jobs this node no longer holds are removed.

A checkpoint describes a part file on its owner's disk. When a node is lost
long enough for another node to take its jobs over, those jobs start again
there from zero (``PostgresJournal.claim`` drops a foreign checkpoint), and
the first node's part files for them can never be resumed. When it comes
back, before its workers start, every part file in its spool is checked
against the journal (``still_mine``: queued or running with this node as
owner); the others are removed. Resumable ones stay and are resumed.

The walk never follows a link (each directory is entered by fd, as the sink
does), and only regular files of ours named ``.<id>.<ext>.part`` are touched.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

from cxstream.sink import safe_fs

StillMine = Callable[[Iterable[str]], Awaitable[set[str]]]


@runtime_checkable
class HoldsLeases(Protocol):
    """A shared journal (PostgreSQL): it knows which jobs are still this node's."""

    async def still_mine(self, recording_ids: Iterable[str]) -> set[str]: ...


def part_owner(name: str) -> str | None:
    """The recording id of a part file name ``.<id>.<ext>.part``, else None."""
    if not (name.startswith(".") and name.endswith(".part")):
        return None
    rid, dot, ext = name[1 : -len(".part")].rpartition(".")
    return rid if dot and rid and ext else None


def _parts(root: Path) -> list[tuple[tuple[str, ...], str, str]]:
    """Every part file of ours below ``root``: (directory parts, file name, recording id)."""
    found: list[tuple[tuple[str, ...], str, str]] = []

    def walk(parts: tuple[str, ...]) -> None:
        try:
            fd = safe_fs.open_dir(root, parts, create=False)
        except (FileNotFoundError, safe_fs.UnsafePath):
            return
        try:
            for name in os.listdir(fd):
                st = safe_fs.lstat(fd, name)
                if st is None:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    walk((*parts, name))
                elif stat.S_ISREG(st.st_mode) and (rid := part_owner(name)) is not None:
                    found.append((parts, name, rid))
        finally:
            os.close(fd)

    walk(())
    return found


def _remove(root: Path, stale: list[tuple[tuple[str, ...], str, str]]) -> list[str]:
    removed = []
    for parts, name, rid in stale:
        try:
            fd = safe_fs.open_dir(root, parts, create=False)
        except (FileNotFoundError, safe_fs.UnsafePath):
            continue
        try:
            if safe_fs.unlink_if(fd, name, None):  # None: any regular file of ours
                removed.append(rid)
        finally:
            os.close(fd)
    return removed


async def sweep(root: Path, still_mine: StillMine) -> list[str]:
    """Remove the part files below ``root`` whose jobs are not this node's; their ids."""
    found = await asyncio.to_thread(_parts, root)
    if not found:
        return []
    mine = await still_mine({rid for _, _, rid in found})
    stale = [entry for entry in found if entry[2] not in mine]
    return sorted(await asyncio.to_thread(_remove, root, stale))
