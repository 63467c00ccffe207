"""The whole-file check for MP4 (ISO BMFF), CXone's recording format.

CXone publishes no checksum for its recordings, so the container is most of
what proves a download whole. mutagen reads the audio track (codec, sample
rate, length); it does not notice a file that stops early or carries junk at
the end, because it stops reading where the boxes it wants end. So a small
box walk here checks what mutagen skips: box sizes (32-bit, 64-bit
``largesize``, 0 = to the end of the file) tile the file exactly, nested boxes
tile their parents, ``ftyp`` comes first, ``moov`` and ``mdat`` are there, a
track's handler says ``soun``, and its chunk offsets point into ``mdat``.

Only box headers and index tables are read, never the media, so memory and
time do not grow with the recording; ``check_mp4`` runs in a thread.
"""

from __future__ import annotations

import asyncio
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mutagen import MutagenError
from mutagen.mp4 import MP4, MP4Info

from cxstream.formats import FormatError

# Boxes allowed before ``ftyp`` (QuickTime writers put padding first).
_BEFORE_FTYP = frozenset({"free", "skip", "wide"})
# Boxes made only of boxes, walked recursively (the sample entries in stsd and
# the metadata in udta have headers of their own; mutagen reads those).
_CONTAINERS = frozenset(
    {"moov", "trak", "mdia", "minf", "stbl", "edts", "dinf", "mvex", "moof", "traf", "mfra"}
)
# Index tables are small (a few KB per hour of audio); anything far bigger is
# a lying size, not an index, and must not be read into memory.
_MAX_TABLE_BYTES = 64 * 1024 * 1024


class Mp4Error(FormatError):
    """The file is not a complete MP4 with an audio track; the message says why."""


@dataclass(frozen=True, slots=True)
class Box:
    type: str
    offset: int
    size: int
    header: int
    path: str
    children: tuple[Box, ...] = ()

    @property
    def end(self) -> int:
        return self.offset + self.size

    def child(self, *names: str) -> Box | None:
        box: Box | None = self
        for name in names:
            box = next((c for c in box.children if c.type == name), None) if box else None
        return box


@dataclass(frozen=True, slots=True)
class Mp4Info:
    size: int
    # Presentation duration (mvhd, edit lists applied): what a player shows.
    duration_s: float
    # The audio track's own length (mdhd, via mutagen), AAC encoder priming included.
    media_duration_s: float
    codec: str
    sample_rate: int
    boxes: tuple[str, ...]


def walk(f: BinaryIO, start: int, end: int, parent: str = "") -> tuple[Box, ...]:
    """The boxes in ``[start, end)``, which must fill it exactly (recursing into containers)."""
    boxes: list[Box] = []
    pos = start
    where = f"inside '{parent}'" if parent else "at the top level"
    while pos < end:
        f.seek(pos)
        head = f.read(min(16, end - pos))
        if len(head) < 8:
            raise Mp4Error(f"{end - pos} trailing bytes at byte {pos} {where} are not a box")
        size32, raw = struct.unpack_from(">I4s", head)
        if not all(0x20 <= b <= 0x7E for b in raw):
            raise Mp4Error(
                f"no box at byte {pos} {where}: type {raw!r} is not a four-character code"
            )
        kind = raw.decode("ascii")
        path = f"{parent}/{kind}" if parent else kind
        header = 8
        if size32 == 1:
            if len(head) < 16:
                raise Mp4Error(f"box '{path}' at byte {pos} is cut inside its 64-bit size")
            size = struct.unpack_from(">Q", head, 8)[0]
            header = 16
        elif size32 == 0 and not parent:
            size = end - pos
        else:
            size = size32
        if size < header:
            raise Mp4Error(f"box '{path}' at byte {pos} has size {size}, less than its header")
        if pos + size > end:
            limit = f"its parent ends at byte {end}" if parent else f"the file ends at byte {end}"
            raise Mp4Error(
                f"box '{path}' at byte {pos} claims {size} bytes but {limit}: "
                f"{'file truncated' if not parent else 'sizes inconsistent'}"
            )
        children = walk(f, pos + header, pos + size, path) if kind in _CONTAINERS else ()
        boxes.append(Box(kind, pos, size, header, path, children))
        pos += size
    return tuple(boxes)


def _payload(f: BinaryIO, box: Box) -> bytes:
    length = box.size - box.header
    if length > _MAX_TABLE_BYTES:
        raise Mp4Error(f"box '{box.path}' is implausibly large ({length} bytes)")
    f.seek(box.offset + box.header)
    return f.read(length)


def _fields(f: BinaryIO, box: Box, layouts: tuple[str, str]) -> tuple[Any, ...]:
    """A full box's fields after version/flags, by version (0, 1)."""
    data = _payload(f, box)
    if not data:
        raise Mp4Error(f"box '{box.path}' is empty")
    layout = layouts[min(data[0], 1)]
    need = 4 + struct.calcsize(layout)
    if len(data) < need:
        raise Mp4Error(f"box '{box.path}' holds {len(data)} bytes, needs {need}")
    return struct.unpack_from(layout, data, 4)


def _check_layout(boxes: tuple[Box, ...]) -> Box:
    kinds = [b.type for b in boxes]
    if not boxes:
        raise Mp4Error("empty file")
    first = next((k for k in kinds if k not in _BEFORE_FTYP), None)
    if first != "ftyp":
        raise Mp4Error(f"the first box is {first!r}, not 'ftyp'")
    moovs = [b for b in boxes if b.type == "moov"]
    if len(moovs) != 1:
        raise Mp4Error(f"{len(moovs)} 'moov' boxes (exactly one expected)")
    if "mdat" not in kinds:
        raise Mp4Error("no 'mdat' box: the file holds no media data")
    return moovs[0]


def _audio_trak(f: BinaryIO, moov: Box) -> Box:
    handlers: list[str] = []
    for trak in (c for c in moov.children if c.type == "trak"):
        hdlr = trak.child("mdia", "hdlr")
        if hdlr is None:
            continue
        handler = _payload(f, hdlr)[8:12]
        if handler == b"soun":
            return trak
        handlers.append(handler.decode("latin-1"))
    found = ", ".join(repr(h) for h in handlers) if handlers else "none"
    raise Mp4Error(f"no audio track (track handlers: {found})")


def _presentation_duration(f: BinaryIO, moov: Box) -> float:
    mvhd = moov.child("mvhd")
    if mvhd is None:
        raise Mp4Error("'moov' has no 'mvhd'")
    timescale, duration = _fields(f, mvhd, (">8xII", ">16xIQ"))
    if not timescale:
        raise Mp4Error("'mvhd' timescale is 0")
    return float(duration) / float(timescale)


def _chunk_offsets(f: BinaryIO, stbl: Box) -> list[int]:
    for name, fmt in (("stco", ">I"), ("co64", ">Q")):
        box = stbl.child(name)
        if box is None:
            continue
        data = _payload(f, box)
        (count,) = _fields(f, box, (">I", ">I"))
        width = struct.calcsize(fmt)
        if len(data) < 8 + count * width:
            raise Mp4Error(f"'{box.path}' lists {count} chunks but holds fewer")
        return [struct.unpack_from(fmt, data, 8 + i * width)[0] for i in range(count)]
    return []


def _sample_bytes(f: BinaryIO, stbl: Box) -> int:
    stsz = stbl.child("stsz")
    if stsz is None:
        return 0
    fixed, count = _fields(f, stsz, (">II", ">II"))
    if fixed:
        return int(fixed) * int(count)
    data = _payload(f, stsz)
    if len(data) < 12 + 4 * count:
        raise Mp4Error(f"'{stsz.path}' lists {count} samples but holds fewer")
    return sum(struct.unpack_from(f">{count}I", data, 12))


def _check_samples(f: BinaryIO, trak: Box, boxes: tuple[Box, ...]) -> None:
    """The audio index must point into ``mdat``: a ``moov`` whose media is gone fails."""
    stbl = trak.child("mdia", "minf", "stbl")
    if stbl is None:
        raise Mp4Error("the audio track has no sample table")
    spans = [(b.offset + b.header, b.end) for b in boxes if b.type == "mdat"]
    for offset in _chunk_offsets(f, stbl):
        if not any(lo <= offset < hi for lo, hi in spans):
            raise Mp4Error(f"audio chunk at byte {offset} lies outside every 'mdat'")
    held = sum(hi - lo for lo, hi in spans)
    needed = _sample_bytes(f, stbl)
    if needed > held:
        raise Mp4Error(f"audio samples need {needed} bytes but 'mdat' holds {held}")


def check_mp4_file(path: str | os.PathLike[str]) -> Mp4Info:
    """Check a complete MP4 file; raises Mp4Error naming the first problem found."""
    with Path(path).open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        boxes = walk(f, 0, size)
        moov = _check_layout(boxes)
        trak = _audio_trak(f, moov)
        _check_samples(f, trak, boxes)
        duration = _presentation_duration(f, moov)
        f.seek(0)
        try:
            # mutagen's constructor is untyped; its info object is an MP4Info.
            info = MP4(f).info  # type: ignore[no-untyped-call]
        except (MutagenError, ValueError) as exc:
            raise Mp4Error(f"unreadable audio track: {exc}") from None
    if not isinstance(info, MP4Info):
        raise Mp4Error("unreadable audio track")
    media_duration = float(info.length)
    if media_duration <= 0:
        raise Mp4Error("the audio track has no duration")
    # Fragmented files leave mvhd's duration 0; the track's own is then all there is.
    return Mp4Info(
        size=size,
        duration_s=duration if duration > 0 else media_duration,
        media_duration_s=media_duration,
        codec=str(info.codec),
        sample_rate=int(info.sample_rate),
        boxes=tuple(b.type for b in boxes),
    )


async def check_mp4(path: str | os.PathLike[str]) -> Mp4Info:
    """:func:`check_mp4_file` in a worker thread (it does blocking file I/O)."""
    return await asyncio.to_thread(check_mp4_file, path)
