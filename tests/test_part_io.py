"""The part file's thread work (``sink/fileio.py``) and its accounting under cancellation.

Real files and real threads; the executor is made small where a test needs a
step to sit queued, so that what is checked is the ordering, not a race.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cxstream.formats import registry, wav
from cxstream.sink.fileio import ShortFile, Spool, read_hashed, write_hashed
from cxstream.sink.lane import Lane
from cxstream.sink.part import ContainerError, PartFile, SourceMismatch

MIB = 1024 * 1024


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    handle = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    yield handle
    os.close(handle)


def test_write_hashed_writes_at_its_offset_and_feeds_every_digest(fd: int) -> None:
    chunks = [os.urandom(n) for n in (1, 2047, 2048, 70_000, 5)]
    a, b = hashlib.sha256(), hashlib.sha256()
    os.pwrite(fd, b"H" * 10, 0)
    write_hashed(fd, chunks, 10, [a, b])
    data = b"".join(chunks)
    assert a.digest() == b.digest() == hashlib.sha256(data).digest()
    assert os.pread(fd, len(data) + 20, 0) == b"H" * 10 + data
    write_hashed(fd, [], 5, [a])  # nothing to write: nothing changes
    assert a.digest() == hashlib.sha256(data).digest()


def test_read_hashed_routes_a_prefix_to_one_digest_only(fd: int) -> None:
    header, body = os.urandom(44), os.urandom(600_000)  # spans several read chunks
    os.pwrite(fd, header + body, 0)
    whole, source = hashlib.sha256(), hashlib.sha256()
    read_hashed(fd, 0, 44 + len(body), (0, [whole]), (44, [source]))
    assert whole.hexdigest() == hashlib.sha256(header + body).hexdigest()
    assert source.hexdigest() == hashlib.sha256(body).hexdigest()
    middle = hashlib.sha256()
    read_hashed(fd, 1000, 300_000, (0, [middle]))
    assert middle.digest() == hashlib.sha256((header + body)[1000:300_000]).digest()
    with pytest.raises(ShortFile, match="10 bytes early"):
        read_hashed(fd, 0, 44 + len(body) + 10, (0, [hashlib.sha256()]))


@pytest.fixture
async def one_worker() -> AsyncIterator[ThreadPoolExecutor]:
    """A default executor of one thread: a step submitted behind a blocker stays queued."""
    pool = ThreadPoolExecutor(max_workers=1)
    asyncio.get_running_loop().set_default_executor(pool)
    yield pool
    pool.shutdown(wait=True)


def _blocker(pool: ThreadPoolExecutor) -> threading.Event:
    release = threading.Event()
    pool.submit(release.wait, 10)
    return release


async def test_a_cancelled_lane_step_still_runs_and_the_next_waits_for_it(
    one_worker: ThreadPoolExecutor,
) -> None:
    lane, done = Lane(), []
    release = _blocker(one_worker)
    first = asyncio.create_task(lane.run(done.append, "first"))
    await asyncio.sleep(0)  # submitted: queued behind the blocker
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert lane.busy and done == []
    closed: list[str] = []
    lane.after(closed.append, "closed")
    assert closed == []  # never under a step that has yet to run
    release.set()
    await lane.run(done.append, "second")
    assert done == ["first", "second"] and closed == ["closed"] and not lane.busy


async def test_an_error_nobody_heard_goes_to_the_next_step(
    one_worker: ThreadPoolExecutor,
) -> None:
    lane = Lane()
    release = _blocker(one_worker)

    def fail() -> None:
        raise OSError(28, "No space left on device")

    task = asyncio.create_task(lane.run(fail))
    await asyncio.sleep(0)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(OSError, match="No space"):
        await lane.run(lambda: None)
    assert not lane.busy
    await lane.run(lambda: None)  # heard once: the lane carries on


async def test_cancelled_mid_flush_the_part_still_holds_and_hashes_every_byte(
    tmp_path: Path, one_worker: ThreadPoolExecutor
) -> None:
    part = PartFile(tmp_path / "rec.wav", registry.PCM)
    await part.create()
    first, second = os.urandom(MIB), os.urandom(6000)
    release = _blocker(one_worker)
    writer = asyncio.create_task(part.write(first))  # 1 MiB: flushes, and waits
    await asyncio.sleep(0)
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    # Accounted before the await: the bytes are the part's, not yet the file's.
    assert part.position == wav.HEADER_BYTES + MIB
    release.set()
    await part.write(second)
    assert await part.batch_digest() == hashlib.sha256(first + second).digest()
    sha = await part.seal()
    published = await part.publish(sha, "rec")
    assert published.path.read_bytes() == wav.header(MIB + 6000) + first + second


async def test_close_after_a_cancelled_flush_waits_for_the_write(
    tmp_path: Path, one_worker: ThreadPoolExecutor
) -> None:
    part = PartFile(tmp_path / "rec.wav", registry.PCM)
    await part.create()
    release = _blocker(one_worker)
    writer = asyncio.create_task(part.write(b"\x01\x00" * MIB))
    await asyncio.sleep(0)
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    closing = asyncio.create_task(part.close())
    await asyncio.sleep(0)
    release.set()
    await closing
    assert not part.is_open
    assert part.path.stat().st_size == wav.HEADER_BYTES + 2 * MIB


async def test_seal_holds_the_read_back_to_the_platforms_sha256(tmp_path: Path) -> None:
    audio = os.urandom(40_000)
    good = PartFile(
        tmp_path / "a.wav", registry.PCM, expect_sha256=hashlib.sha256(audio).hexdigest()
    )
    await good.create()
    await good.write(audio)
    sha = await good.seal()
    assert good.source_sha256() == hashlib.sha256(audio).hexdigest()
    assert sha == hashlib.sha256(wav.header(len(audio)) + audio).hexdigest()
    await good.discard()

    bad = PartFile(tmp_path / "b.wav", registry.PCM, expect_sha256="00" * 32)
    await bad.create()
    await bad.write(audio)
    with pytest.raises(SourceMismatch):
        await bad.seal()
    with pytest.raises(ContainerError, match="not sealed"):
        bad.source_sha256()
    await bad.discard()


async def test_seal_finds_bytes_changed_on_disk_after_they_were_hashed(tmp_path: Path) -> None:
    # No platform sha256: the read-back is held to the hash kept as bytes landed.
    part = PartFile(tmp_path / "rec.mp4", registry.MP4)  # no streaming check: raw bytes do
    await part.create()
    await part.write(os.urandom(50_000))
    await part.settle()
    os.pwrite(part.fileno(), b"\x00", 1234)  # the disk changes what was verified
    with pytest.raises(ContainerError, match="differ from the bytes verified"):
        await part.seal()
    await part.discard()


def test_a_fast_stream_runs_per_mib_a_slow_one_once_it_holds_64k_a_second() -> None:
    now = [0.0]
    spool = Spool(Lane())
    spool.clock = lambda: now[0]
    spool.reset(44)
    assert not any(spool.add(bytes(64 * 1024)) for _ in range(15))  # 960 KiB held
    assert spool.add(bytes(64 * 1024))  # a MiB: due
    spool.reset(44 + MIB)
    assert not spool.add(bytes(60 * 1024))
    now[0] += 5.0  # held 5 s, but less than 64 KiB
    assert not spool.add(bytes(2 * 1024))
    assert spool.add(bytes(2 * 1024))  # 64 KiB, held since 5 s ago
    spool.reset(0)
    assert not any(spool.add(b"x") for _ in range(511))
    assert spool.add(b"x")  # 512 chunks: as many as one pwritev takes here


async def test_a_flush_writes_the_run_where_it_belongs_and_feeds_it(fd: int) -> None:
    spool, digest = Spool(Lane()), hashlib.sha256()
    spool.fd = fd
    spool.reset(10)
    spool.add(b"abc")
    spool.add(b"defg")
    await spool.flush([digest])
    assert spool.flushed == 17
    assert os.pread(fd, 100, 0) == bytes(10) + b"abcdefg"
    assert digest.digest() == hashlib.sha256(b"abcdefg").digest()


async def test_two_callers_on_one_lane_run_one_after_the_other() -> None:
    pool = ThreadPoolExecutor(max_workers=2)  # room for both at once: the lane must not
    asyncio.get_running_loop().set_default_executor(pool)
    lane, order, release = Lane(), [], threading.Event()

    def first() -> None:
        order.append("first starts")
        release.wait(10)
        order.append("first ends")

    a = asyncio.create_task(lane.run(first))
    b = asyncio.create_task(lane.run(order.append, "second"))
    c = asyncio.create_task(lane.run(order.append, "third"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert order == ["first starts"]
    release.set()
    await asyncio.gather(a, b, c)
    assert order[:2] == ["first starts", "first ends"]
    assert sorted(order[2:]) == ["second", "third"]
    pool.shutdown(wait=True)
