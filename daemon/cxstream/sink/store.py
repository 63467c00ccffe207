"""Where verified recordings go: the seam between a finished part file and the archive.

A ``Store`` is chosen once, in the composition root, from ``storage.backend``:

- ``FsStore`` (``fs``): the part file is written beside its final name in
  ``storage.dir`` and published there by a hard link (``sink/publish.py``);
- ``S3Store`` (``s3``, ``sink/s3_store.py``): the part file is written and
  verified in the local spool, then uploaded, then removed.

The fetcher never asks which one it has. It writes its part file under
``local_root``, and hands the sealed part to ``publish`` with a function that
makes the sidecar for the place the store chose (a path, or ``s3://…``): only
the store knows that place, and a taken name moves it.

What a store may raise, beside ``UnsafePath`` (fs): ``StoreOutage`` (retry
later: the job is handed back, its verified part kept) and ``StoreRefused``
(permanent, with a stable ``code`` for ``recording.failed``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cxstream.audit import AuditLog
from cxstream.config import StorageConfig
from cxstream.sink.part import PartFile
from cxstream.sink.publish import write_sidecar


class StoreOutage(Exception):
    """The store cannot take the recording now (unreachable, 5xx, throttled).

    An outage of ours, like a full disk: never charged to the recording."""


class StoreRefused(Exception):
    """The store refused for good (403, a checksum it rejected, Object Lock
    misconfigured, both names taken): ``code`` goes to ``recording.failed``."""

    def __init__(self, code: str, detail: str, *, status: int | None = None) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.status = status


@dataclass(frozen=True, slots=True)
class Item:
    """A sealed part file as a store needs to know it."""

    recording_id: str
    day: str  # YYYY/MM/DD
    ext: str
    content_type: str
    sha256: str  # of the whole file on disk
    size: int


@dataclass(frozen=True, slots=True)
class Conflict:
    """What sat under the name we wanted (left as it was)."""

    existing: str
    existing_sha256: str | None


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the recording now is: the sidecar's and the announcement's ``path``."""

    path: str
    conflict: Conflict | None


# Given the place the recording went, the sidecar's bytes (they name that place).
Describe = Callable[[str], bytes]


class Store(Protocol):
    @property
    def local_root(self) -> Path:
        """Where part files are written and verified (the root no link below is followed)."""

    @property
    def where(self) -> str:
        """The archive as audit lines name it (a directory, or ``s3://<bucket>/<prefix>``)."""

    async def publish(self, part: PartFile, item: Item, describe: Describe) -> Placement:
        """Make the sealed ``part`` the archived recording, then write its sidecar.

        On success the part is closed and its name gone. On ``StoreOutage`` it
        is left open and untouched: the caller hands the job back with it."""

    async def ready(self) -> bool:
        """May a worker take a job now? False while an outage is known (re-probed)."""

    async def healthy(self) -> bool:
        """A live probe, for ``/readyz``."""


def local_root(storage: StorageConfig) -> Path:
    """Where this node writes part files for ``storage.backend``."""
    return storage.spool if storage.backend == "s3" else storage.dir


class FsStore:
    """``storage.dir``: the part is linked to its final name, never over another file."""

    def __init__(self, root: Path) -> None:
        self._root = root

    @property
    def local_root(self) -> Path:
        return self._root

    @property
    def where(self) -> str:
        return str(self._root)

    async def publish(self, part: PartFile, item: Item, describe: Describe) -> Placement:
        published = await part.publish(item.sha256, item.recording_id)
        conflict = None
        if published.conflict is not None:
            found = published.conflict
            conflict = Conflict(str(found.existing), found.existing_sha256)
        await write_sidecar(self._root, published, describe(str(published.path)))
        return Placement(str(published.path), conflict)

    async def ready(self) -> bool:
        return True  # the disk's own gate is the DiskGuard

    async def healthy(self) -> bool:
        return True  # /readyz's "storage" check writes a probe file there


class StoreStartError(Exception):
    """The configured store cannot be used at all (one line, for the operator)."""


@contextlib.asynccontextmanager
async def open_store(storage: StorageConfig, audit: AuditLog) -> AsyncIterator[Store]:
    """The configured store, open for as long as the block runs.

    An object store is checked first: a missing bucket, refused credentials or
    a bucket without the Object Lock that retention needs is a
    ``StoreStartError``; a store that is only unreachable starts paused."""
    if storage.backend != "s3":
        yield FsStore(storage.dir)
        return
    # Imported here: aiobotocore is an optional dependency (the `s3` extra).
    from cxstream.sink.s3_store import opened

    async with opened(storage, audit) as store:
        yield store
