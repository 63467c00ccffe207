"""The 44-byte canonical RIFF/WAVE header for the PCM CXone serves.

Hand-packed rather than through the stdlib ``wave`` writer because we stream
the samples through aiofiles and only know the size at the end; the tests read
every file back with ``wave`` to hold this to the format.
"""

from __future__ import annotations

import struct

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
