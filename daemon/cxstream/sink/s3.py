"""Publish a verified recording, then its sidecar, to S3-compatible object storage.

The recording is streamed and verified in a local spool file first, exactly
as on a filesystem; this module only moves verified bytes. Every upload
carries ``x-amz-checksum-sha256``, so the store checks the bytes itself: a
single PUT up to ``part_bytes``, above it a multipart upload whose every part
has its own checksum. An object becomes visible only when the PUT or the
CompleteMultipartUpload succeeds; a failed multipart upload is aborted. A
crash can still leave an incomplete multipart upload behind (invisible, but
billed): give the bucket an ``AbortIncompleteMultipartUpload`` lifecycle rule.

Nothing is ever overwritten. A key that already holds these bytes (a retry
after a crash, or another node that got there first) counts as published; a
key holding other bytes is an ``ObjectConflict`` for the caller to resolve.
Writes are also conditional (``If-None-Match: *``), which closes the race
between two nodes that both found the key free.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from cxstream.config import StorageConfig
from cxstream.sink.s3_errors import (
    ObjectConflict,
    PublishRejected,
    S3Error,
    SpoolMismatch,
    StoreUnavailable,
    classify,
)
from cxstream.sink.s3_upload import b64, call, head, put_multipart, put_small

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

PART_BYTES = 8 * 1024 * 1024  # S3's floor for every part but the last is 5 MiB
SHA256_META = "sha256"  # x-amz-meta-sha256: the whole file's hex digest, multipart or not

__all__ = [
    "PART_BYTES",
    "ObjectConflict",
    "ObjectKeys",
    "PublishRejected",
    "Published",
    "S3Error",
    "S3Publisher",
    "SpoolMismatch",
    "StoreUnavailable",
    "object_keys",
]


@dataclass(frozen=True, slots=True)
class ObjectKeys:
    recording: str
    sidecar: str


def object_keys(prefix: str, day: str, recording_id: str, ext: str) -> ObjectKeys:
    """``<prefix>YYYY/MM/DD/<id>.<ext>`` and ``.json``, as on a filesystem (contract §4)."""
    base = f"{prefix}{day}/{recording_id}"
    return ObjectKeys(recording=f"{base}.{ext}", sidecar=f"{base}.json")


@dataclass(frozen=True, slots=True)
class Published:
    url: str  # s3://<bucket>/<key>: the archive callback's `path`
    key: str
    sidecar_key: str
    existed: bool  # the recording was already there with these bytes


class S3Publisher:
    def __init__(
        self,
        config: StorageConfig,
        *,
        part_bytes: int = PART_BYTES,
        max_attempts: int = 3,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
    ) -> None:
        self._cfg = config
        self._part_bytes = part_bytes
        self._boto = AioConfig(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"mode": "standard", "max_attempts": max_attempts},
            # S3-compatible stores rarely serve virtual-host names for a custom endpoint.
            s3={"addressing_style": "path"} if config.endpoint else None,
            # Our explicit SHA-256 is the checksum; no extra CRC trailers some stores reject.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self._stack = contextlib.AsyncExitStack()
        self._client: S3Client | None = None

    async def __aenter__(self) -> S3Publisher:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        cfg = self._cfg
        secret = cfg.secret_access_key
        # Without keys in the configuration, botocore's usual chain applies
        # (environment, shared files, instance or container role).
        client = get_session().create_client(
            "s3",
            region_name=cfg.region or None,
            endpoint_url=cfg.endpoint or None,
            config=self._boto,
            aws_access_key_id=cfg.access_key_id or None,
            aws_secret_access_key=secret.reveal() if secret else None,
        )
        self._client = await self._stack.enter_async_context(client)

    async def close(self) -> None:
        self._client = None
        await self._stack.aclose()

    @property
    def client(self) -> S3Client:
        if self._client is None:
            raise StoreUnavailable("s3_closed", "the publisher is not open")
        return self._client

    def url(self, key: str) -> str:
        return f"s3://{self._cfg.bucket}/{key}"

    # -- checks -----------------------------------------------------------

    async def check(self) -> None:
        """At start: the bucket answers, and has Object Lock if retention is asked."""
        bucket = self._cfg.bucket
        try:
            await self.client.head_bucket(Bucket=bucket)
            if self._cfg.retention_mode or self._cfg.legal_hold:
                got = await self.client.get_object_lock_configuration(Bucket=bucket)
                enabled = got.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
                if enabled != "Enabled":
                    raise PublishRejected("s3_object_lock_invalid", f"{bucket}: lock not enabled")
        except Exception as exc:
            raise classify(exc, f"check bucket {bucket}") from None

    async def healthy(self) -> bool:
        try:
            await self.client.head_bucket(Bucket=self._cfg.bucket)
        except Exception:
            return False
        return True

    # -- publication ------------------------------------------------------

    async def publish(
        self,
        spool: Path,
        keys: ObjectKeys,
        *,
        sha256: str,
        size: int,
        sidecar: bytes,
        content_type: str = "application/octet-stream",
    ) -> Published:
        """Upload ``spool`` (verified: ``sha256`` hex, ``size`` bytes), then ``sidecar``.

        Raises StoreUnavailable (retry later), ObjectConflict (other bytes at
        the key) or PublishRejected (permanent, with a clear ``code``).
        """
        extra = self._lock_and_encryption()
        existed = await self._matches(keys.recording, sha256, size)
        if not existed:
            args = {**extra, "ContentType": content_type, "Metadata": {SHA256_META: sha256}}
            try:
                bucket, key = self._cfg.bucket, keys.recording
                if size <= self._part_bytes:
                    await put_small(self.client, bucket, key, spool, sha256, size, args)
                else:
                    part = self._part_bytes
                    await put_multipart(self.client, bucket, key, spool, sha256, size, part, args)
            except S3Error as exc:
                if exc.status != 412:
                    raise
                # Another node completed the same key between our HEAD and write.
                if not await self._matches(keys.recording, sha256, size):
                    raise ObjectConflict(keys.recording, "written concurrently") from None
                existed = True
        await self._ensure_lock(keys.recording, extra)
        await self._put_sidecar(keys.sidecar, sidecar, extra)
        await self._ensure_lock(keys.sidecar, extra)
        return Published(self.url(keys.recording), keys.recording, keys.sidecar, existed)

    def _lock_and_encryption(self) -> dict[str, Any]:
        cfg, out = self._cfg, dict[str, Any]()
        if cfg.retention_mode:
            # Computed once, so the recording and its sidecar are kept alike.
            now = datetime.now(UTC).replace(microsecond=0)  # the header's precision
            until = now + timedelta(days=cfg.retention_days)
            out |= {"ObjectLockMode": cfg.retention_mode, "ObjectLockRetainUntilDate": until}
        if cfg.legal_hold:
            out["ObjectLockLegalHoldStatus"] = "ON"
        if cfg.sse:
            out["ServerSideEncryption"] = cfg.sse
            if cfg.kms_key_id:
                out["SSEKMSKeyId"] = cfg.kms_key_id
        return out

    async def _matches(self, key: str, sha256: str, size: int) -> bool:
        """False if the key is free; True if it holds these bytes; else a conflict."""
        found = await head(self.client, self._cfg.bucket, key)
        if found is None:
            return False
        ours = found.get("Metadata", {}).get(SHA256_META)
        theirs = found.get("ChecksumSHA256", "")
        if found.get("ContentLength") == size:
            if ours == sha256:
                return True
            if not ours and theirs == b64(bytes.fromhex(sha256)):  # a single PUT's checksum
                return True
        raise ObjectConflict(key, f"holds {found.get('ContentLength')} other bytes")

    async def _ensure_lock(self, key: str, extra: dict[str, Any]) -> None:
        """Read the lock back, and set what is missing. Some stores ignore Object
        Lock headers on a multipart upload, and a crash between an upload and
        this call leaves an object whose retry finds it already there."""
        mode, hold = extra.get("ObjectLockMode"), extra.get("ObjectLockLegalHoldStatus")
        if not mode and not hold:
            return
        bucket, client = self._cfg.bucket, self.client
        found: Any = await head(client, bucket, key) or {}
        if mode and not found.get("ObjectLockMode"):
            retention: Any = {"Mode": mode, "RetainUntilDate": extra["ObjectLockRetainUntilDate"]}
            await call(
                f"PutObjectRetention {key}",
                client.put_object_retention(Bucket=bucket, Key=key, Retention=retention),
            )
        if hold and found.get("ObjectLockLegalHoldStatus") != hold:
            await call(
                f"PutObjectLegalHold {key}",
                client.put_object_legal_hold(Bucket=bucket, Key=key, LegalHold={"Status": "ON"}),
            )

    async def _put_sidecar(self, key: str, body: bytes, extra: dict[str, Any]) -> None:
        """A sidecar already there was written after these same bytes (by a run
        that crashed before the journal heard of it): it is kept as it is."""
        if await head(self.client, self._cfg.bucket, key) is not None:
            return
        digest = hashlib.sha256(body).digest()
        try:
            await call(
                f"PutObject {key}",
                self.client.put_object(
                    Bucket=self._cfg.bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/json",
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=b64(digest),
                    Metadata={SHA256_META: digest.hex()},
                    IfNoneMatch="*",
                    **extra,
                ),
            )
        except S3Error as exc:
            if exc.status != 412:  # 412: another node wrote it just now
                raise
