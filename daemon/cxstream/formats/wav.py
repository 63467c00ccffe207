"""RIFF/WAVE: the 44-byte header for the PCM CXone serves, and a whole-file check.

The header is hand-packed rather than through the stdlib ``wave`` writer
because we stream the samples to the file and only know the size at the
end; the tests read every file back with ``wave`` to hold this to the format.
The check (``check_wav_file``) is for WAV fetched from elsewhere (Genesys):
the stdlib reader accepts only PCM and does not notice junk after the data.
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cxstream.formats import FormatError

HEADER_BYTES = 44
RATE = 8000
CHANNELS = 1
SAMPLE_BYTES = 2
_MAX_DATA = 0xFFFFFFFF - 36


def header(data_bytes: int) -> bytes:
    if data_bytes % (SAMPLE_BYTES * CHANNELS):
        raise ValueError(f"{data_bytes} bytes is not a whole number of samples")
    if not 0 <= data_bytes <= _MAX_DATA:
        raise ValueError(f"{data_bytes} bytes does not fit a RIFF file")
    block = CHANNELS * SAMPLE_BYTES
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        CHANNELS,
        RATE,
        RATE * block,
        block,
        SAMPLE_BYTES * 8,
        b"data",
        data_bytes,
    )


class PcmCheck:
    """PCM has no framing to check; what can be checked is whole samples."""

    def __init__(self) -> None:
        self.bytes = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self.bytes += len(data)

    def finish(self) -> None:
        if self.bytes % (SAMPLE_BYTES * CHANNELS):
            raise ValueError(f"{self.bytes} bytes is not a whole number of 16-bit samples")
        if not self.bytes:
            raise ValueError("no samples")


# -- the whole-file check ----------------------------------------------------

# Formats whose duration is data bytes / byte rate: PCM, IEEE float, A-law,
# mu-law (Genesys's WAV_ULAW) and WAVE_FORMAT_EXTENSIBLE around any of them.
LINEAR_FORMATS = frozenset({1, 3, 6, 7, 0xFFFE})
_FMT = struct.Struct("<HHIIHH")


class WavError(FormatError):
    """The file is not a complete RIFF/WAVE; the message says why."""


@dataclass(frozen=True, slots=True)
class WavInfo:
    size: int
    format_tag: int
    channels: int
    sample_rate: int
    bits_per_sample: int
    data_bytes: int
    duration_s: float


def _chunks(f: BinaryIO, size: int) -> Iterator[tuple[bytes, int, int]]:
    """``(id, payload offset, payload size)`` of each chunk after the RIFF header."""
    pos = 12
    while pos < size:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            raise WavError(f"{size - pos} trailing bytes at byte {pos} are not a chunk")
        chunk_id, length = struct.unpack("<4sI", head)
        if not all(0x20 <= b <= 0x7E for b in chunk_id):
            raise WavError(f"no chunk at byte {pos}: id {chunk_id!r} is not a four-character code")
        padded = length + (length & 1)
        if pos + 8 + padded > size:
            raise WavError(
                f"chunk {chunk_id.decode()!r} at byte {pos} claims {length} bytes but only "
                f"{size - pos - 8} remain: file truncated"
            )
        yield chunk_id, pos + 8, length
        pos += 8 + padded


def check_wav_file(path: str | os.PathLike[str]) -> WavInfo:
    """Check a complete RIFF/WAVE file; raises WavError naming the first problem found."""
    with Path(path).open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise WavError("not a RIFF/WAVE file")
        riff_size = struct.unpack_from("<I", head, 4)[0]
        if riff_size + 8 != size:
            raise WavError(f"RIFF header says {riff_size + 8} bytes but the file has {size}")
        fmt: tuple[int, ...] | None = None
        data_bytes: int | None = None
        for chunk_id, offset, length in _chunks(f, size):
            if chunk_id == b"fmt ":
                if length < _FMT.size:
                    raise WavError(f"'fmt ' chunk is {length} bytes, needs {_FMT.size}")
                f.seek(offset)
                fmt = _FMT.unpack(f.read(_FMT.size))
            elif chunk_id == b"data":
                if fmt is None:
                    raise WavError("'data' chunk before 'fmt '")
                if data_bytes is not None:
                    raise WavError("two 'data' chunks")
                data_bytes = length
    return _wav_info(size, fmt, data_bytes)


def _wav_info(size: int, fmt: tuple[int, ...] | None, data_bytes: int | None) -> WavInfo:
    """The format chunk and data size, held to each other."""
    if fmt is None:
        raise WavError("no 'fmt ' chunk")
    if data_bytes is None:
        raise WavError("no 'data' chunk")
    tag, channels, rate, byte_rate, block_align, bits = fmt
    if tag not in LINEAR_FORMATS:
        raise WavError(f"unsupported WAVE format tag {tag:#06x}")
    if not channels or not rate or not block_align or byte_rate != rate * block_align:
        raise WavError(
            f"inconsistent 'fmt ': {channels} channels, {rate} Hz, "
            f"{byte_rate} bytes/s, {block_align} bytes/frame"
        )
    if data_bytes % block_align:
        raise WavError(
            f"{data_bytes} data bytes is not a whole number of {block_align}-byte frames"
        )
    return WavInfo(size, tag, channels, rate, bits, data_bytes, data_bytes / byte_rate)


async def check_wav(path: str | os.PathLike[str]) -> WavInfo:
    """:func:`check_wav_file` in a worker thread (it does blocking file I/O)."""
    return await asyncio.to_thread(check_wav_file, path)
