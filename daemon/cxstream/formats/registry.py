"""One registry of the formats cxstream fetches: the facts every stage needs.

Config validation (which codec names exist), the sink (extension, header,
streaming check), the sidecar and the announcement (content type), the demo
and the tests all read them here, so a new format is one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cxstream.formats import ogg, wav


class StreamCheck(Protocol):
    """Checks bytes as they land; ``finish`` when a response's body is complete."""

    def update(self, data: bytes | bytearray | memoryview) -> None: ...
    def finish(self) -> None: ...


class NoCheck:
    """For containers only checked whole, once the file is complete (MP4, RIFF)."""

    def update(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def finish(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    extension: str
    content_type: str  # of the file as archived
    header_bytes: int  # written by us in front of the source's bytes (PCM → WAV)
    stream_check: Callable[[], StreamCheck]
    check_name: str | None  # for the sidecar's ``verified_by``; None: no streaming check
    container: str  # for the whole-file check (formats/check.py)

    def header(self, source_bytes: int) -> bytes:
        return wav.header(source_bytes) if self.header_bytes else b""


OPUS = Format("opus", "opus", "audio/ogg; codecs=opus", 0, ogg.OggCheck, "ogg-pages", "opus")
PCM = Format("pcm", "wav", "audio/wav", wav.HEADER_BYTES, wav.PcmCheck, "pcm-samples", "wav")
MP4 = Format("mp4", "mp4", "audio/mp4", 0, NoCheck, None, "mp4")
WAV = Format("wav", "wav", "audio/wav", 0, NoCheck, None, "wav")

FORMATS: dict[str, Format] = {f.name: f for f in (OPUS, PCM, MP4, WAV)}
# What CXone's stream API (contract §1) can be asked for, in ``cxone.codecs``.
STREAM_CODECS = ("opus", "pcm")


def get(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown format {name!r}") from None
