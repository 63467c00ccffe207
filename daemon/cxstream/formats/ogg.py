"""Ogg pages (RFC 3533): the CRC, a page parser and a serial-number rewriter.

Ogg's CRC is CRC-32 with the normal (MSB-first) polynomial 0x04C11DB7, init 0
and no final xor. zlib implements only the reflected variant, so we feed it
bit-reversed bytes and reverse the result: the arithmetic then runs in C,
which matters because every page of every recording goes through it.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

CAPTURE = b"OggS"
HEADER_FIXED = 27
FLAG_CONTINUED = 0x01
FLAG_BOS = 0x02
FLAG_EOS = 0x04

_REVERSE_BITS = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
_HEADER = struct.Struct("<4sBBqIIIB")


def _reverse32(value: int) -> int:
    return int(f"{value:032b}"[::-1], 2)


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
