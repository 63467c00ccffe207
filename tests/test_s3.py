"""The S3 publisher against a real S3 endpoint process on loopback (tests/s3server.py).

What the store holds is read back with a client of its own, as an operator
would; nothing is taken from the publisher's word.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

from cxstream.config import Secret, StorageConfig
from tests.s3server import TEST_PART_BYTES
from tests.s3server import running as s3_running

pytest.importorskip("aiobotocore")
from aiobotocore.session import get_session

from cxstream.sink.s3 import (
    ObjectConflict,
    ObjectKeys,
    PublishRejected,
    S3Publisher,
    SpoolMismatch,
    StoreUnavailable,
    object_keys,
)

KEYS = object_keys("archive/", "2026/11/24", "rec-0001", "opus")
Make = Callable[..., Awaitable[S3Publisher]]


def b64sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def spool(tmp_path: Path, size: int, seed: int = 0) -> tuple[Path, bytes]:
    data = (hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1))[:size]
    path = tmp_path / f"spool-{seed}-{size}.opus"
    path.write_bytes(data)
    return path, data


@pytest.fixture
async def store(s3_endpoint: str) -> AsyncIterator[Any]:
    """The operator's own client on the same endpoint."""
    async with get_session().create_client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test-secret",
    ) as client:
        yield client


@pytest.fixture
async def buckets(store: Any) -> dict[str, str]:
    plain, locked = f"plain-{uuid.uuid4().hex[:12]}", f"locked-{uuid.uuid4().hex[:12]}"
    await store.create_bucket(Bucket=plain)
    await store.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    return {"plain": plain, "locked": locked}


@pytest.fixture
async def make(tmp_path: Path, s3_endpoint: str, buckets: dict[str, str]) -> AsyncIterator[Make]:
    opened: list[S3Publisher] = []

    async def make_(bucket: str = "plain", endpoint: str = s3_endpoint, **kw: Any) -> S3Publisher:
        config = StorageConfig(
            dir=tmp_path / "recordings",
            state_dir=tmp_path / "state",
            backend="s3",
            bucket=buckets.get(bucket, bucket),
            prefix="archive/",
            endpoint=endpoint,
            region="us-east-1",
            access_key_id="test",
            secret_access_key=Secret("test-secret"),
            **kw,
        )
        publisher = S3Publisher(config, part_bytes=TEST_PART_BYTES, max_attempts=1)
        await publisher.open()
        opened.append(publisher)
        return publisher

    yield make_
    for publisher in opened:
        await publisher.close()


async def nothing_at(store: Any, bucket: str, key: str) -> bool:
    listed = await store.list_objects_v2(Bucket=bucket, Prefix=key)
    uploads = await store.list_multipart_uploads(Bucket=bucket)
    return listed.get("KeyCount", 0) == 0 and not uploads.get("Uploads")


async def test_a_small_recording_is_one_put_with_its_checksum(
    make: Make, store: Any, buckets: dict[str, str], tmp_path: Path
) -> None:
    publisher = await make()
    path, data = spool(tmp_path, 10_000)
    sha = hashlib.sha256(data).hexdigest()
    done = await publisher.publish(path, KEYS, sha256=sha, size=len(data), sidecar=b'{"a":1}')
    bucket = buckets["plain"]
    assert done.url == f"s3://{bucket}/archive/2026/11/24/rec-0001.opus" and not done.existed
    got = await store.get_object(Bucket=bucket, Key=KEYS.recording, ChecksumMode="ENABLED")
    assert await got["Body"].read() == data
    assert got["ChecksumSHA256"] == b64sha(data) and got["Metadata"]["sha256"] == sha
    side = await store.get_object(Bucket=bucket, Key="archive/2026/11/24/rec-0001.json")
    assert await side["Body"].read() == b'{"a":1}'
    assert side["ContentType"] == "application/json"


async def test_a_large_recording_is_a_multipart_upload_checked_part_by_part(
    make: Make, store: Any, buckets: dict[str, str], tmp_path: Path
) -> None:
    publisher = await make()
    path, data = spool(tmp_path, 3 * TEST_PART_BYTES + 1234)
    sha = hashlib.sha256(data).hexdigest()
    await publisher.publish(path, KEYS, sha256=sha, size=len(data), sidecar=b"{}")
    bucket = buckets["plain"]
    head = await store.head_object(Bucket=bucket, Key=KEYS.recording, ChecksumMode="ENABLED")
    parts = [data[i : i + TEST_PART_BYTES] for i in range(0, len(data), TEST_PART_BYTES)]
    composite = hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in parts)).digest()
    # S3's checksum of a multipart object: the checksum of the parts' checksums
    # (AWS appends "-<parts>", moto does not).
    assert head["ChecksumSHA256"].split("-")[0] == base64.b64encode(composite).decode()
    assert head["Metadata"]["sha256"] == sha and head["ContentLength"] == len(data)
    got = await store.get_object(Bucket=bucket, Key=KEYS.recording)
    assert await got["Body"].read() == data
    assert not (await store.list_multipart_uploads(Bucket=bucket)).get("Uploads")


class CorruptingProxy:
    """Sits between publisher and store and flips one byte of chosen PUT bodies, as
    a faulty middlebox would. The checksum header passes through untouched."""

    def __init__(self, upstream: str, corrupt: Callable[[web.Request], bool]) -> None:
        self.upstream, self.corrupt = upstream, corrupt
        self.flipped = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.method == "PUT" and body and self.corrupt(request):
            body, self.flipped = bytes([body[0] ^ 0xFF]) + body[1:], self.flipped + 1
        skip = {"host", "content-length", "transfer-encoding"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        async with (
            ClientSession() as session,
            session.request(
                request.method, self.upstream + request.path_qs, headers=headers, data=body
            ) as resp,
        ):
            payload = await resp.read()
            keep = {"content-type", "etag", "x-amz-request-id"}
            out = {k: v for k, v in resp.headers.items() if k.lower() in keep}
            return web.Response(status=resp.status, body=payload, headers=out)

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()


async def test_bytes_damaged_on_the_way_are_refused_by_the_store(
    make: Make, store: Any, buckets: dict[str, str], tmp_path: Path, s3_endpoint: str
) -> None:
    small, small_data = spool(tmp_path, 5000, seed=1)
    large, large_data = spool(tmp_path, 3 * TEST_PART_BYTES, seed=2)
    proxy = CorruptingProxy(
        s3_endpoint, lambda r: "rec-" in r.path and "partNumber=1" not in r.path_qs
    )
    async with proxy as via:
        publisher = await make(endpoint=via)
        for path, data in ((small, small_data), (large, large_data)):
            with pytest.raises(PublishRejected) as caught:
                sha = hashlib.sha256(data).hexdigest()
                await publisher.publish(path, KEYS, sha256=sha, size=len(data), sidecar=b"{}")
            assert caught.value.code == "s3_checksum_mismatch" and not caught.value.retryable
            assert caught.value.status == 400
    assert proxy.flipped == 2  # one PUT, then part 2 of the multipart upload
    # Nothing visible, and the multipart upload was aborted.
    assert await nothing_at(store, buckets["plain"], "archive/")


async def test_retention_legal_hold_and_encryption_on_both_objects(
    make: Make, store: Any, buckets: dict[str, str], tmp_path: Path
) -> None:
    publisher = await make(
        "locked", retention_mode="GOVERNANCE", retention_days=7, legal_hold=True, sse="AES256"
    )
    await publisher.check()
    for size, keys in ((3000, KEYS), (2 * TEST_PART_BYTES + 1, object_keys("", "d", "big", "wav"))):
        path, data = spool(tmp_path, size)
        await publisher.publish(
            path, keys, sha256=hashlib.sha256(data).hexdigest(), size=size, sidecar=b"{}"
        )
        heads = [
            await store.head_object(Bucket=buckets["locked"], Key=key)
            for key in (keys.recording, keys.sidecar)
        ]
        for head in heads:
            assert head["ObjectLockMode"] == "GOVERNANCE"
            assert head["ObjectLockLegalHoldStatus"] == "ON"
            assert head["ServerSideEncryption"] == "AES256"
            until = head["ObjectLockRetainUntilDate"]
            assert abs(until - (datetime.now(UTC) + timedelta(days=7))) < timedelta(minutes=5)
        assert heads[0]["ObjectLockRetainUntilDate"] == heads[1]["ObjectLockRetainUntilDate"]


async def test_a_kms_key_is_passed_to_the_store(
    make: Make, store: Any, buckets: dict[str, str], tmp_path: Path
) -> None:
    publisher = await make(sse="aws:kms", kms_key_id="alias/cxstream-archive")
    path, data = spool(tmp_path, 100)
    await publisher.publish(
        path, KEYS, sha256=hashlib.sha256(data).hexdigest(), size=100, sidecar=b"{}"
    )
    head = await store.head_object(Bucket=buckets["plain"], Key=KEYS.recording)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith("alias/cxstream-archive")


async def test_object_lock_on_a_bucket_without_it_is_a_clear_permanent_error(
    make: Make, store: Any, buckets: dict[str, str], tmp_path: Path
) -> None:
    publisher = await make("plain", retention_mode="COMPLIANCE", retention_days=1)
    with pytest.raises(PublishRejected) as at_start:
        await publisher.check()
    assert at_start.value.code == "s3_object_lock_invalid"
    path, data = spool(tmp_path, 100)
    with pytest.raises(PublishRejected) as caught:
        await publisher.publish(
            path, KEYS, sha256=hashlib.sha256(data).hexdigest(), size=100, sidecar=b"{}"
        )
    assert caught.value.code == "s3_object_lock_invalid"
    assert await nothing_at(store, buckets["plain"], "archive/")


async def test_the_same_bytes_again_are_done_other_bytes_are_a_conflict(
    make: Make, store: Any, buckets: dict[str, str], tmp_path: Path
) -> None:
    publisher = await make()
    path, data = spool(tmp_path, 4000)
    sha = hashlib.sha256(data).hexdigest()
    first = await publisher.publish(path, KEYS, sha256=sha, size=4000, sidecar=b'{"run":1}')
    again = await publisher.publish(path, KEYS, sha256=sha, size=4000, sidecar=b'{"run":2}')
    assert (first.existed, again.existed) == (False, True) and again.url == first.url
    side = await store.get_object(Bucket=buckets["plain"], Key=KEYS.sidecar)
    assert await side["Body"].read() == b'{"run":1}'  # never overwritten
    other, other_data = spool(tmp_path, 4000, seed=9)
    with pytest.raises(ObjectConflict) as caught:
        await publisher.publish(
            other, KEYS, sha256=hashlib.sha256(other_data).hexdigest(), size=4000, sidecar=b"{}"
        )
    assert caught.value.code == "s3_object_exists" and caught.value.key == KEYS.recording
    got = await store.get_object(Bucket=buckets["plain"], Key=KEYS.recording)
    assert await got["Body"].read() == data


async def test_two_nodes_publishing_the_same_recording_at_once(
    make: Make, store: Any, buckets: dict[str, str], tmp_path: Path
) -> None:
    a, b = await make(), await make()
    for size, keys in ((3000, KEYS), (3 * TEST_PART_BYTES, object_keys("", "d", "big", "wav"))):
        path, data = spool(tmp_path, size)
        sha = hashlib.sha256(data).hexdigest()
        done = await asyncio.gather(
            *(p.publish(path, keys, sha256=sha, size=size, sidecar=b"{}") for p in (a, b))
        )
        # Conditional writes: at least one uploaded and both name the same object.
        # (AWS decides If-None-Match atomically; moto's threaded server may let two
        # simultaneous writes of the same bytes both through, so "exactly one"
        # cannot be held to here without a flaky test.)
        assert not all(d.existed for d in done) and done[0].url == done[1].url
        got = await store.get_object(Bucket=buckets["plain"], Key=keys.recording)
        assert await got["Body"].read() == data


async def test_a_spool_file_changed_after_verification_is_not_published(
    make: Make, store: Any, buckets: dict[str, str], tmp_path: Path
) -> None:
    publisher = await make()
    for size in (1000, 3 * TEST_PART_BYTES):
        path, data = spool(tmp_path, size)
        sha = hashlib.sha256(data).hexdigest()
        path.write_bytes(b"\0" + data[1:])  # a disk fault, or a stray writer
        with pytest.raises(SpoolMismatch):
            await publisher.publish(path, KEYS, sha256=sha, size=size, sidecar=b"{}")
    assert await nothing_at(store, buckets["plain"], "archive/")


async def test_wrong_credentials_are_a_permanent_access_error(tmp_path: Path) -> None:
    # A second endpoint that checks credentials (moto's IAM, which knows no keys).
    with s3_running(INITIAL_NO_AUTH_ACTION_COUNT="0") as endpoint:
        config = StorageConfig(
            dir=tmp_path,
            state_dir=tmp_path,
            backend="s3",
            bucket="any-bucket",
            endpoint=endpoint,
            region="us-east-1",
            access_key_id="AKIAWRONG",
            secret_access_key=Secret("wrong-secret"),
        )
        path, data = spool(tmp_path, 100)
        async with S3Publisher(config, max_attempts=1) as publisher:
            with pytest.raises(PublishRejected) as caught:
                await publisher.publish(
                    path, KEYS, sha256=hashlib.sha256(data).hexdigest(), size=100, sidecar=b"{}"
                )
            assert not await publisher.healthy()
    assert caught.value.code == "s3_access_denied" and caught.value.status == 403
    assert "wrong-secret" not in str(caught.value)


async def test_an_unreachable_store_is_retryable(make: Make, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening
        publisher = await make(endpoint=closed)
        path, data = spool(tmp_path, 100)
        with pytest.raises(StoreUnavailable) as caught:
            await publisher.publish(
                path, KEYS, sha256=hashlib.sha256(data).hexdigest(), size=100, sidecar=b"{}"
            )
    assert caught.value.code == "s3_unreachable" and caught.value.retryable
    assert not await publisher.healthy()


def test_keys_follow_the_filesystem_layout() -> None:
    assert object_keys("", "2026/01/02", "a.b-c", "wav") == ObjectKeys(
        "2026/01/02/a.b-c.wav", "2026/01/02/a.b-c.json"
    )
    assert object_keys("p/", "2026/01/02", "x", "opus").recording == "p/2026/01/02/x.opus"
