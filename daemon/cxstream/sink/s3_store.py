"""``storage.backend = "s3"``: verified in the local spool, then uploaded (``S3Publisher``).

The part file lives in ``storage.spool`` under the same day layout as on a
filesystem and is verified there exactly as it would be in ``storage.dir``.
``publish`` uploads it with its sidecar (the store checks the sha256 too),
and only then removes it. The store's answers become the fetcher's:

- ``StoreUnavailable`` (unreachable, 5xx, throttled) is an outage: the part
  stays as it is for the next attempt, ``StoreOutage`` hands the job back,
  and workers take no job until a probe of the bucket answers again
  (``store.paused`` … ``store.resumed``, checked at most once a second);
- ``ObjectConflict`` (the key holds other bytes) publishes under
  ``<id>.conflict-<sha12>.<ext>`` as a filesystem would; if that key is
  taken by other bytes too, ``StoreRefused("s3_object_exists")``;
- any other ``PublishRejected`` is ``StoreRefused`` with its code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

from cxstream.audit import AuditLog
from cxstream.config import StorageConfig
from cxstream.sink.part import PartFile
from cxstream.sink.publish import conflict_stem
from cxstream.sink.s3 import (
    SHA256_META,
    ObjectConflict,
    ObjectKeys,
    PublishRejected,
    S3Publisher,
    StoreUnavailable,
    object_keys,
)
from cxstream.sink.s3_upload import head
from cxstream.sink.store import (
    Conflict,
    Describe,
    Item,
    Placement,
    StoreOutage,
    StoreRefused,
    StoreStartError,
)

_RECHECK_S = 1.0
_HEX64 = re.compile(r"[0-9a-f]{64}")


class S3Store:
    def __init__(
        self,
        config: StorageConfig,
        publisher: S3Publisher,
        audit: AuditLog,
        *,
        recheck_s: float = _RECHECK_S,
    ) -> None:
        self._cfg = config
        self._pub = publisher
        self._audit = audit
        self._recheck_s = recheck_s
        self._down_at: float | None = None  # set while an outage is known
        self._checked_at = -1e9
        self._lock = asyncio.Lock()

    @property
    def local_root(self) -> Path:
        return self._cfg.spool

    @property
    def where(self) -> str:
        """``s3://<bucket>/<prefix>``: the store as audit lines name it."""
        return self._pub.url(self._cfg.prefix)

    # -- start ------------------------------------------------------------

    async def check(self) -> None:
        """At start: PublishRejected (no bucket, no Object Lock, denied) stops
        the daemon; an unreachable store only pauses the workers."""
        try:
            await self._pub.check()
        except StoreUnavailable as exc:
            self.outage(str(exc))

    # -- the gate ---------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._down_at is not None

    def outage(self, error: str) -> None:
        if self._down_at is None:
            self._down_at = self._checked_at = time.monotonic()
            self._audit.warning("store.paused", store=self.where, error=error)

    async def ready(self) -> bool:
        if self._down_at is None:
            return True
        async with self._lock:
            now = time.monotonic()
            if self._down_at is None or now - self._checked_at < self._recheck_s:
                return self._down_at is None
            self._checked_at = now
            if await self._pub.healthy():
                paused_s = round(now - self._down_at, 3)
                self._down_at = None
                self._audit.info("store.resumed", store=self.where, paused_s=paused_s)
        return self._down_at is None

    async def healthy(self) -> bool:
        return await self._pub.healthy()

    # -- publication ------------------------------------------------------

    async def publish(self, part: PartFile, item: Item, describe: Describe) -> Placement:
        prefix, rid = self._cfg.prefix, item.recording_id
        keys = object_keys(prefix, item.day, rid, item.ext)
        try:
            try:
                url, conflict = await self._put(part, item, keys, describe), None
            except ObjectConflict as taken:
                # Never replaced: ours goes beside it, as on a filesystem.
                conflict = Conflict(self._pub.url(taken.key), await self._sha256_at(taken.key))
                beside = object_keys(prefix, item.day, conflict_stem(rid, item.sha256), item.ext)
                try:
                    url = await self._put(part, item, beside, describe)
                except ObjectConflict:
                    raise StoreRefused(
                        "s3_object_exists", f"{rid}: its key and its conflict key hold other bytes"
                    ) from None
        except StoreUnavailable as exc:
            self.outage(str(exc))
            raise StoreOutage(str(exc)) from None
        except PublishRejected as exc:
            detail = str(exc).partition(": ")[2] or rid  # str(exc) is "code: detail"
            raise StoreRefused(exc.code, detail, status=exc.status) from None
        # Uploaded and checked by the store: the spool copy has done its work.
        await part.discard()
        return Placement(url, conflict)

    async def _put(self, part: PartFile, item: Item, keys: ObjectKeys, describe: Describe) -> str:
        url = self._pub.url(keys.recording)
        done = await self._pub.publish(
            part.path,
            keys,
            sha256=item.sha256,
            size=item.size,
            sidecar=describe(url),
            content_type=item.content_type,
        )
        return done.url

    async def _sha256_at(self, key: str) -> str | None:
        """The hex sha256 of what holds ``key``, as far as its headers say."""
        with contextlib.suppress(Exception):
            found = await head(self._pub.client, self._cfg.bucket, key)
            if found is not None:
                ours = found.get("Metadata", {}).get(SHA256_META, "")
                if _HEX64.fullmatch(ours):
                    return ours
                theirs = found.get("ChecksumSHA256", "")
                digest = base64.b64decode(theirs) if "-" not in theirs else b""
                if len(digest) == 32:  # a multipart upload's checksum is of its parts
                    return digest.hex()
        return None


@contextlib.asynccontextmanager
async def opened(config: StorageConfig, audit: AuditLog) -> AsyncIterator[S3Store]:
    """The store, its client open for the daemon's life; ``StoreStartError`` if the
    bucket is missing, refuses us, or lacks the Object Lock the configuration asks for."""
    async with S3Publisher(config) as publisher:
        store = S3Store(config, publisher, audit)
        try:
            await store.check()
        except PublishRejected as exc:
            raise StoreStartError(str(exc)) from None
        yield store
