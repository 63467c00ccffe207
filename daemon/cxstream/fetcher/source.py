"""The seam between a job and the platform its recordings come from.

A ``Source`` turns a job into ``Target``s (the files to produce) and a target
into ``Media`` in one format: what is known to verify it, and how to open a
byte stream of each of its pieces from an offset. Everything else — the
persistent GET loop, the idle watchdog, ``Range`` resume, checkpoints, the
attempt budgets, quarantine, publication, audit — is shared and lives in
``job.py`` / ``stream.py``. A source adds only what is specific to its API.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from cxstream.formats.registry import Format
from cxstream.journal import Job


@dataclass(frozen=True, slots=True)
class Expect:
    """What the platform told us the whole file must be (None: not known)."""

    size: int | None = None
    sha256: str | None = None
    duration_s: float | None = None


@dataclass(frozen=True, slots=True)
class Piece:
    """One response body, placed contiguously in the file.

    ``key`` names it in a checkpoint (segment offsets for the stream API,
    ``(0,)`` for a whole file); ``units`` is how far it advances the media.
    """

    key: tuple[int, ...]
    units: int
    label: str
    need_digest: bool = False
    where: str | None = None  # a media URL's scheme://host/path (never its query)


@dataclass(frozen=True, slots=True)
class Target:
    """One file to produce. ``ref`` lets a child job find it again (a Genesys
    recording id, the n-th file of a CXone contact); ``extra`` goes to the sidecar."""

    name: str
    formats: tuple[str, ...]
    ref: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Media(Protocol):
    """One target in one format, ready to be fetched piece by piece."""

    @property
    def fmt(self) -> Format: ...
    @property
    def expect(self) -> Expect: ...
    @property
    def units(self) -> int: ...
    @property
    def max_bytes(self) -> int | None:
        """The most the whole file's source bytes may total: the bound every response is
        held to (the expected size when known, else a ceiling such as the whole recording's
        size for a subset)."""

    @property
    def verified_by(self) -> tuple[str, ...]:
        """The platform-level checks that apply (the sidecar lists them)."""

    @property
    def segments(self) -> list[dict[str, int]]: ...
    def piece(self, done: int) -> Piece: ...
    def narrow(self, max_segments: int | None, piece: Piece) -> bool:
        """Adopt a lower per-request limit (a 413); False when the piece cannot shrink."""

    def open(self, piece: Piece, start: int) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """A response whose body is the piece's bytes from ``start`` (200 or 206); raises
        a FetchError subclass otherwise."""


class Source(Protocol):
    kind: str

    async def resolve(self, job: Job) -> tuple[Target, ...]:
        """The files this job stands for. Raises NotReady while the platform has none yet."""

    async def media(self, job: Job, target: Target, fmt: str) -> Media:
        """The target in ``fmt``; CodecUnavailable moves on to the next format."""

    def forget(self, job: Job) -> None:
        """Drop whatever was cached for ``job`` (it finished or was handed back)."""
