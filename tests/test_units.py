"""Pure logic: Retry-After, backoff, the watchdog, digests, Ogg CRC, WAV header, sockets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import random
import socket
import wave
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from cxstream.fetcher.errors import Backoff, Stalled, parse_retry_after
from cxstream.fetcher.transport import _keepalive_socket
from cxstream.fetcher.watchdog import Watchdog
from cxstream.formats import ogg, registry, wav
from cxstream.sink.digest import DigestHeaderError, parse_repr_digest
from cxstream.sink.part import ContainerError, PartFile


def test_retry_after_seconds_and_http_date() -> None:
    now = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_backoff_is_full_jitter_under_a_cap() -> None:
    rng = random.Random(1)
    backoff = Backoff(base=0.5, cap=8.0)
    for failures in range(1, 12):
        ceiling = min(8.0, 0.5 * 2 ** (failures - 1))
        delays = [backoff.delay(failures, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spans the range, not a constant


async def test_watchdog_fires_on_silence_and_not_while_pinged() -> None:
    async with Watchdog(0.2) as dog:
        for _ in range(6):
            await asyncio.sleep(0.1)
            dog.ping()
    with pytest.raises(Stalled):
        async with Watchdog(0.2):
            await asyncio.sleep(5)


def test_repr_digest_parsing() -> None:
    digest = hashlib.sha256(b"audio").digest()
    header = f"sha-256=:{base64.b64encode(digest).decode()}:"
    assert parse_repr_digest(header) == digest
    assert parse_repr_digest(f"sha-512=:{base64.b64encode(bytes(64)).decode()}:") is None
    assert parse_repr_digest(None) is None
    for bad in ("sha-256=:AAAA:", "sha-256=abc", "[[[", "sha-256=:é:"):
        with pytest.raises(DigestHeaderError):
            parse_repr_digest(bad)


def _reference_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
            crc &= 0xFFFFFFFF
    return crc


def test_ogg_crc_matches_the_bitwise_definition() -> None:
    rng = random.Random(7)
    for size in (0, 1, 27, 255, 4096):
        data = bytes(rng.getrandbits(8) for _ in range(size))
        assert ogg.crc32(data) == _reference_crc(data)


def test_wav_header_reads_back_with_the_stdlib() -> None:
    samples = os.urandom(16000)
    with wave.open(io.BytesIO(wav.header(len(samples)) + samples), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert w.readframes(w.getnframes()) == samples
    with pytest.raises(ValueError, match="whole number of samples"):
        wav.header(3)


def test_client_sockets_have_keepalive() -> None:
    info = socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)[0]
    sock = _keepalive_socket(info)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    finally:
        sock.close()


async def test_part_file_resume_rehashes_and_truncates(tmp_path: Path) -> None:
    final = tmp_path / "rec.wav"
    first, second = os.urandom(5000), os.urandom(3000)
    part = PartFile(final, registry.PCM)
    await part.create()
    await part.write(first)
    await part.begin_batch()
    await part.write(second[:1000])
    await part.sync()
    cp = (part.batch_start, part.position)
    await part.write(b"bytes past the checkpoint, lost in the crash")
    await part.sync()
    await part.close()

    again = PartFile(final, registry.PCM)
    assert await again.resume(*cp)
    assert again.batch_bytes == 1000
    await again.write(second[1000:])
    assert await again.batch_digest() == hashlib.sha256(second).digest()
    sealed = await again.seal()
    assert again.source_sha256() == hashlib.sha256(first + second).hexdigest()
    published = await again.publish(sealed, "rec")
    assert published.path == final and published.conflict is None
    data = final.read_bytes()
    assert data == wav.header(8000) + first + second
    assert sealed == hashlib.sha256(data).hexdigest()
    assert not again.path.exists()


async def test_part_file_refuses_a_broken_ogg_page(tmp_path: Path) -> None:
    seg = (Path(ogg.__file__).parent.parent / "sim" / "audio" / "seg0.opus").read_bytes()
    part = PartFile(tmp_path / "rec.opus", registry.OPUS)
    await part.create()
    rotten = bytearray(seg)
    rotten[5000] ^= 0xFF
    with pytest.raises(ContainerError, match="CRC mismatch"):
        await part.write(bytes(rotten))
    await part.restart_batch()
    await part.write(seg[:-10])
    with pytest.raises(ContainerError, match="trailing bytes"):
        part.end_batch()
    await part.discard()


async def test_restart_batch_rolls_back_both_hashes(tmp_path: Path) -> None:
    part = PartFile(tmp_path / "rec.wav", registry.PCM)
    await part.create()
    await part.write(b"\x01\x00" * 100)
    await part.begin_batch()
    await part.write(b"\x02\x00" * 50)
    await part.restart_batch()
    await part.write(b"\x03\x00" * 50)
    expected = b"\x01\x00" * 100 + b"\x03\x00" * 50
    sha = await part.seal()
    assert part.source_sha256() == hashlib.sha256(expected).hexdigest()
    await part.publish(sha, "rec")
    data = (tmp_path / "rec.wav").read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha
    with wave.open(str(tmp_path / "rec.wav"), "rb") as w:
        assert w.readframes(w.getnframes()) == expected


def _seg(i: int = 0) -> bytes:
    return (Path(ogg.__file__).parent.parent / "sim" / "audio" / f"seg{i}.opus").read_bytes()


def _pages(data: bytes) -> list[bytes]:
    return [raw for _, raw in ogg.iter_pages(data)]


def _with_flags(page: bytes, flags: int) -> bytes:
    out = bytearray(page)
    out[5] = flags
    out[22:26] = b"\0\0\0\0"
    out[22:26] = ogg.crc32(out).to_bytes(4, "little")
    return bytes(out)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda p: [*p[:-1], _with_flags(p[-1], 0)], "not closed by EOS"),
        (lambda p: p[:2] + p[3:], "sequence gap"),
        (lambda p: [b"RIFF" + b"\0" * 40, *p], "no Ogg page"),
        (lambda p: [p[0], p[0], *p[1:]], "reuses serial|not closed"),
        (lambda p: [*p, p[-1]], "belongs to no open link"),
    ],
    ids=["missing-eos", "sequence-gap", "not-ogg", "second-bos", "page-after-eos"],
)
def test_ogg_check_rejects_broken_links(mangle, message) -> None:
    check = ogg.OggCheck()
    with pytest.raises(ogg.OggError, match=message):
        for page in mangle(_pages(_seg())):
            check.update(page)
        check.finish()


def test_ogg_check_accepts_a_chain_in_any_split() -> None:
    chain = b"".join(ogg.reserial(_seg(i % 4), 500 + i) for i in range(6))
    for step in (1, 7, 4096, len(chain)):
        check = ogg.OggCheck()
        for i in range(0, len(chain), step):
            check.update(chain[i : i + step])
        check.finish()
        assert check.pages == len(ogg.iter_pages(chain))


def test_ogg_check_catches_any_flipped_bit_in_any_split() -> None:
    seg, rng = _seg(), random.Random(12)
    for _ in range(200):
        rotten = bytearray(seg)
        rotten[rng.randrange(len(rotten))] ^= 1 << rng.randrange(8)
        step = rng.choice([1, 13, 4096, len(rotten)])
        check = ogg.OggCheck()
        with pytest.raises(ogg.OggError):
            for i in range(0, len(rotten), step):
                piece = memoryview(rotten)[i : i + step]
                check.update(piece if i % 2 else bytes(piece))
            check.finish()


async def test_a_paused_watchdog_does_not_fire() -> None:
    # Our own disk work runs paused: only the network can stall.
    async with Watchdog(0.1) as dog:
        dog.pause()
        await asyncio.sleep(0.3)
        dog.ping()


def test_backoff_survives_a_sink_down_for_days() -> None:
    assert 0 <= Backoff(base=1.0, cap=300.0).delay(5000) <= 300.0
