"""The S3 calls themselves: a checksummed PUT, a checksummed multipart upload, a HEAD.

The spool file is read and hashed off the event loop, one part at a time (at
most ``part_bytes`` in memory per upload), and its whole sha256 is checked
again against what was verified before anything becomes visible: a PUT is
sent only if the bytes read match, a multipart upload is completed only if
all of them did, and aborted otherwise. Writes are conditional
(``If-None-Match: *``): a key that exists already answers 412.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from collections.abc import Awaitable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError

from cxstream.sink.s3_errors import SpoolMismatch, classify, error_fields

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef, HeadObjectOutputTypeDef

T = TypeVar("T")


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


async def call(what: str, awaitable: Awaitable[T]) -> T:
    """Await one S3 call; any failure becomes a classified S3Error naming ``what``."""
    try:
        return await awaitable
    except Exception as exc:
        raise classify(exc, what) from None


async def head(client: S3Client, bucket: str, key: str) -> HeadObjectOutputTypeDef | None:
    """The object's headers (with its checksum), or None if there is none."""
    try:
        return await client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if error_fields(exc)[2] == 404:
            return None
        raise classify(exc, f"HeadObject {key}") from None
    except Exception as exc:
        raise classify(exc, f"HeadObject {key}") from None


def _changed(spool: Path) -> SpoolMismatch:
    return SpoolMismatch("spool_mismatch", f"{spool.name} changed since it was verified")


async def put_small(
    client: S3Client, bucket: str, key: str, spool: Path, sha256: str, size: int, args: Any
) -> None:
    data = await asyncio.to_thread(spool.read_bytes)
    digest = await asyncio.to_thread(lambda: hashlib.sha256(data).digest())
    if len(data) != size or digest.hex() != sha256:
        raise _changed(spool)
    await call(
        f"PutObject {key}",
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=b64(digest),
            IfNoneMatch="*",
            **args,
        ),
    )


def _read_part(fh: IO[bytes], size: int, whole: Any) -> tuple[bytes, str]:
    chunk = fh.read(size)
    whole.update(chunk)
    return chunk, b64(hashlib.sha256(chunk).digest())


async def put_multipart(
    client: S3Client,
    bucket: str,
    key: str,
    spool: Path,
    sha256: str,
    size: int,
    part_bytes: int,
    args: Any,
) -> None:
    created = await call(
        f"CreateMultipartUpload {key}",
        client.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256", **args),
    )
    upload_id = created["UploadId"]
    try:
        parts: list[CompletedPartTypeDef] = []
        whole, total = hashlib.sha256(), 0
        with await asyncio.to_thread(spool.open, "rb") as fh:
            while True:
                chunk, checksum = await asyncio.to_thread(_read_part, fh, part_bytes, whole)
                if not chunk:
                    break
                total += len(chunk)
                number = len(parts) + 1
                done = await call(
                    f"UploadPart {number} {key}",
                    client.upload_part(
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=chunk,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=checksum,
                    ),
                )
                parts.append(
                    {"PartNumber": number, "ETag": done["ETag"], "ChecksumSHA256": checksum}
                )
        if total != size or whole.hexdigest() != sha256:
            raise _changed(spool)
        await call(
            f"CompleteMultipartUpload {key}",
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            ),
        )
    except BaseException:
        # Also on cancellation: the parts must not linger, and nothing became visible.
        await asyncio.shield(_abort(client, bucket, key, upload_id))
        raise


async def _abort(client: S3Client, bucket: str, key: str, upload_id: str) -> None:
    with contextlib.suppress(Exception):
        await client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
