"""Ogg pages (RFC 3533): the CRC, a page parser, a serial-number rewriter and
the Ogg Opus check, streaming (``OggCheck``) or of a whole file (``check_opus_file``).

Ogg's CRC is CRC-32 with the normal (MSB-first) polynomial 0x04C11DB7, init 0
and no final xor. zlib implements only the reflected variant, so we feed it
bit-reversed bytes and reverse the result: the arithmetic then runs in C,
which matters because every page of every recording goes through it.
"""

from __future__ import annotations

import asyncio
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from cxstream.formats import FormatError

CAPTURE = b"OggS"
HEADER_FIXED = 27
FLAG_BOS = 0x02
FLAG_EOS = 0x04
OPUS_RATE = 48_000
_OPUS_HEAD_BYTES = 19
_FILE_CHUNK = 64 * 1024

_REVERSE_BITS = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
_HEADER = struct.Struct("<4sBBqIIIB")


_ZERO_CRC = bytes(4)


def _reverse32(value: int) -> int:
    return int.from_bytes(value.to_bytes(4, "little").translate(_REVERSE_BITS), "big")


def crc32(data: bytes | bytearray | memoryview) -> int:
    raw = zlib.crc32(bytes(data).translate(_REVERSE_BITS), 0xFFFFFFFF) ^ 0xFFFFFFFF
    return _reverse32(raw)


@dataclass(frozen=True, slots=True)
class Page:
    version: int
    flags: int
    granule: int
    serial: int
    sequence: int
    crc: int
    header_len: int
    body_len: int

    @property
    def size(self) -> int:
        return self.header_len + self.body_len

    @property
    def bos(self) -> bool:
        return bool(self.flags & FLAG_BOS)

    @property
    def eos(self) -> bool:
        return bool(self.flags & FLAG_EOS)


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> Page | None:
    """Parse the page header at ``pos``; None when ``buf`` does not hold all of it yet."""
    if len(buf) - pos < HEADER_FIXED:
        return None
    capture, version, flags, granule, serial, seq, crc, nsegs = _HEADER.unpack_from(buf, pos)
    header_len = HEADER_FIXED + nsegs
    if len(buf) - pos < header_len:
        return None
    if capture != CAPTURE:
        # The caller decides what a bad capture means; report it as a page with
        # an impossible version so the check lives in one place (the verifier).
        return Page(-1, flags, granule, serial, seq, crc, header_len, 0)
    body_len = sum(bytes(buf[pos + HEADER_FIXED : pos + header_len]))
    return Page(version, flags, granule, serial, seq, crc, header_len, body_len)


def page_crc(page_bytes: bytes | bytearray | memoryview) -> int:
    """CRC of a whole page, computed with its CRC field taken as zero."""
    view = memoryview(page_bytes)
    return crc32(bytes(view[:22]) + b"\0\0\0\0" + bytes(view[26:]))


def iter_pages(data: bytes) -> list[tuple[Page, bytes]]:
    """Split a complete Ogg byte string into pages (raises ValueError if malformed)."""
    pages: list[tuple[Page, bytes]] = []
    pos = 0
    while pos < len(data):
        page = parse_header(data, pos)
        if page is None or page.version != 0 or pos + page.size > len(data):
            raise ValueError(f"malformed Ogg page at byte {pos}")
        pages.append((page, data[pos : pos + page.size]))
        pos += page.size
    return pages


def with_serial(page_bytes: bytes, serial: int) -> bytes:
    """The same page under another logical-stream serial number, CRC recomputed."""
    out = bytearray(page_bytes)
    struct.pack_into("<I", out, 14, serial)
    struct.pack_into("<I", out, 22, 0)
    struct.pack_into("<I", out, 22, crc32(out))
    return bytes(out)


def reserial(stream: bytes, serial: int) -> bytes:
    """A whole logical stream (one link of a chain) under a new serial number."""
    return b"".join(with_serial(raw, serial) for _, raw in iter_pages(stream))


class OggError(FormatError):
    """The bytes break the Ogg Opus container; the message says where and how."""


class OggCheck:
    """Checks a chained Ogg Opus stream as it arrives, in whatever pieces it comes.

    Per page: capture pattern, version 0, CRC. Per link (logical stream):
    BOS first with ``OpusHead``, then ``OpusTags``, page sequence without
    gaps, nothing after EOS, and closed by EOS before the next link begins
    (CXone's chained recordings never interleave links). At most one partial
    page is buffered, so memory stays bounded by Ogg's 64 KiB page limit.

    ``samples`` counts the 48 kHz samples of every closed link (its last
    granule position minus its ``OpusHead`` pre-skip, RFC 7845 §4).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._rev = bytearray()  # _buf, each byte bit-reversed
        self._offset = 0  # stream position of _buf[0], for error messages
        self._open: int | None = None  # serial of the link in progress
        self._next_seq = 0
        self._seen: set[int] = set()
        self._pre_skip = 0
        self._granule = 0
        self.pages = 0
        self.links = 0
        self.samples = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        # The CRC runs over a bit-reversed copy of the bytes (see crc32), made
        # once per chunk in C; each page's CRC is then three zlib calls on
        # views of it, and no page is copied.
        raw = data if isinstance(data, bytes) else bytes(data)
        if self._buf:
            self._buf += raw
            self._rev += raw.translate(_REVERSE_BITS)
            buf: bytes | bytearray = self._buf
            rev: bytes | bytearray = self._rev
        else:
            buf, rev = raw, raw.translate(_REVERSE_BITS)
        pos = self._pages(buf, rev)
        if buf is self._buf:
            del self._buf[:pos], self._rev[:pos]
        else:
            self._buf, self._rev = bytearray(buf[pos:]), bytearray(rev[pos:])
        self._offset += pos

    def _pages(self, buf: bytes | bytearray, rev: bytes | bytearray) -> int:
        """Check every whole page in ``buf``; how many bytes they took."""
        pos, end = 0, len(buf)
        with memoryview(rev) as rv:
            while end - pos >= HEADER_FIXED:
                capture, version, flags, granule, serial, seq, crc, nsegs = _HEADER.unpack_from(
                    buf, pos
                )
                body = pos + HEADER_FIXED + nsegs
                if end < body:
                    break
                if capture != CAPTURE or version != 0:
                    raise OggError(f"no Ogg page at byte {self._offset + pos}")
                size = body - pos + sum(buf[pos + HEADER_FIXED : body])
                if end - pos < size:
                    break
                at = self._offset + pos
                # The CRC field counts as zero; zero bit-reversed is zero.
                check = zlib.crc32(rv[pos : pos + 22], 0xFFFFFFFF)
                check = zlib.crc32(_ZERO_CRC, check)
                check = zlib.crc32(rv[pos + 26 : pos + size], check) ^ 0xFFFFFFFF
                if check != _reverse32(crc):
                    raise OggError(f"CRC mismatch in page at byte {at}")
                head = bytes(buf[body : min(body + _OPUS_HEAD_BYTES, pos + size)])
                self._page(flags, granule, serial, seq, head, at)
                pos += size
        return pos

    def _page(self, flags: int, granule: int, serial: int, seq: int, head: bytes, at: int) -> None:
        magic = head[:8]
        if flags & FLAG_BOS:
            if self._open is not None:
                raise OggError(f"link {self._open} not closed by EOS before byte {at}")
            if serial in self._seen or seq != 0:
                raise OggError(f"BOS page at byte {at} reuses serial or sequence")
            if magic != b"OpusHead":
                raise OggError(f"link at byte {at} does not start with OpusHead")
            if len(head) < _OPUS_HEAD_BYTES:
                raise OggError(f"OpusHead at byte {at} is cut short")
            self._open, self._next_seq = serial, 0
            self._pre_skip = struct.unpack_from("<H", head, 10)[0]
            self._granule = 0
            self._seen.add(serial)
        elif serial != self._open:
            raise OggError(f"page at byte {at} belongs to no open link")
        if seq != self._next_seq:
            raise OggError(f"page sequence gap at byte {at}")
        if seq == 1 and magic != b"OpusTags":
            raise OggError(f"link at byte {at} has no OpusTags")
        self._next_seq += 1
        self.pages += 1
        if granule != -1:  # -1: no packet ends on this page
            self._granule = granule
        if flags & FLAG_EOS:
            self._open = None
            self.links += 1
            self.samples += max(0, self._granule - self._pre_skip)

    def finish(self) -> None:
        """At the end of a batch: no partial page left, every link closed."""
        if self._buf:
            raise OggError(f"{len(self._buf)} trailing bytes are not a whole page")
        if self._open is not None:
            raise OggError(f"link {self._open} not closed by EOS")
        if not self.pages:
            raise OggError("no Ogg pages")


@dataclass(frozen=True, slots=True)
class OpusInfo:
    size: int
    links: int
    pages: int
    duration_s: float


def check_opus_file(path: str | os.PathLike[str]) -> OpusInfo:
    """Check a complete (possibly chained) Ogg Opus file; OggError names the first problem."""
    check = OggCheck()
    size = 0
    with Path(path).open("rb") as f:
        while chunk := f.read(_FILE_CHUNK):
            check.update(chunk)
            size += len(chunk)
    check.finish()
    return OpusInfo(size, check.links, check.pages, check.samples / OPUS_RATE)


async def check_opus(path: str | os.PathLike[str]) -> OpusInfo:
    """:func:`check_opus_file` in a worker thread (it reads the whole file)."""
    return await asyncio.to_thread(check_opus_file, path)
