"""The audio the simulator serves: real Ogg Opus speech and synthetic PCM.

Segment ``i`` of a recording is built from fixture ``i % 4``. Opus segments
are the packaged fixtures (trimmed when a recording's segments are shorter
than 15 s) under a serial number unique to (recording, segment), so any run of
consecutive segments is a valid chained Ogg file. PCM is a deterministic tone
pattern, generated once per library: it has to be byte-exact across runs and
cheap, not pleasant.
"""

from __future__ import annotations

import hashlib
import math
import struct
import sys
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from importlib import resources

from cxstream.formats import ogg
from cxstream.sim.faults import repr_digest
from cxstream.sim.spec import RecordingSpec

FIXTURES = 4
PCM_RATE = 8000
PCM_BYTES_PER_SECOND = PCM_RATE * 2
OPUS_RATE = 48_000
CONTENT_TYPES = {
    "opus": "audio/ogg; codecs=opus",
    "pcm": "audio/L16; rate=8000; channels=1",
}
# Bodies served with their digest, kept for repeats (a benchmark fetches the
# same batches three times; a client retries): bounded by total size.
SERVED_CACHE_BYTES = 64 * 1024 * 1024
# The MP4 fixtures (make_mp4_fixtures.py) and their presentation durations.
MP4_SECONDS = {"call15": 15.0, "call30": 30.0}
# Periods that divide 8000 samples exactly, so a one-second block is a whole
# number of cycles and can be built by repetition instead of per-sample math.
_TONE_PERIODS = (40, 32, 25, 20, 16, 10, 8)


def pcm_block(fixture: int, second: int) -> bytes:
    """One second of the PCM pattern: a tone whose pitch and level vary per second."""
    period = _TONE_PERIODS[(second + 2 * fixture) % len(_TONE_PERIODS)]
    amplitude = 2000 + 700 * ((3 * second + fixture) % 8)
    cycle = array(
        "h", (round(amplitude * math.sin(2 * math.pi * j / period)) for j in range(period))
    )
    block = cycle * (PCM_RATE // period)
    if sys.byteorder == "big":
        block.byteswap()
    return block.tobytes()


def trim_opus(stream: bytes, seconds: int) -> bytes:
    """Cut an Opus logical stream to ``seconds`` by end-trimming its granule positions.

    RFC 7845 lets the last page's granule position stop short of the samples it
    holds; decoders discard the rest. So: keep pages up to the one that reaches
    the target, give that page the exact end granule and the EOS flag.
    """
    pages = ogg.iter_pages(stream)
    head = pages[0][1]
    pre_skip = struct.unpack_from("<H", head, pages[0][0].header_len + 10)[0]
    end = pre_skip + seconds * OPUS_RATE
    out: list[bytes] = []
    for page, raw in pages:
        if page.granule < end and not page.eos:
            out.append(raw)
            continue
        last = bytearray(raw)
        struct.pack_into("<q", last, 6, min(page.granule, end))
        last[5] |= ogg.FLAG_EOS
        struct.pack_into("<I", last, 22, ogg.page_crc(last))
        out.append(bytes(last))
        break
    return b"".join(out)


def segment_serials(recording_id: str, count: int) -> list[int]:
    """Serial numbers for each segment: stable per (recording, index), distinct per recording."""
    serials: list[int] = []
    used: set[int] = set()
    for index in range(count):
        digest = hashlib.sha256(f"{recording_id}\0{index}".encode()).digest()
        serial = int.from_bytes(digest[:4], "big")
        while serial in used:
            serial = (serial + 1) & 0xFFFFFFFF
        used.add(serial)
        serials.append(serial)
    return serials


class AudioLibrary:
    """Fixtures, generated PCM and per-recording totals, each computed once.

    Whole recordings are not cached; the bodies of recent stream requests are,
    with their ``Repr-Digest``, up to :data:`SERVED_CACHE_BYTES` (least recently
    used out first), so a repeated request costs no join and no sha256.
    """

    def __init__(self) -> None:
        self._fixtures: dict[int, bytes] = {}
        self._mp4: dict[str, bytes] = {}
        self._opus: dict[tuple[int, int], bytes] = {}
        self._pcm: dict[tuple[int, int], bytes] = {}
        self._serials: dict[tuple[str, int], list[int]] = {}
        self._expected: dict[tuple[str, int, int, str], tuple[int, str]] = {}
        self._served: OrderedDict[tuple[object, ...], tuple[bytes, str]] = OrderedDict()
        self._served_bytes = 0

    def fixture(self, index: int) -> bytes:
        """The packaged Ogg Opus file ``seg{index}.opus`` as shipped."""
        if index not in self._fixtures:
            path = resources.files("cxstream.sim").joinpath("audio", f"seg{index}.opus")
            self._fixtures[index] = path.read_bytes()
        return self._fixtures[index]

    def mp4(self, name: str) -> bytes:
        """The packaged MP4 fixture ``<name>.mp4`` (one of ``MP4_SECONDS``)."""
        if name not in MP4_SECONDS:
            raise ValueError(f"no MP4 fixture {name!r}")
        if name not in self._mp4:
            path = resources.files("cxstream.sim").joinpath("audio", f"{name}.mp4")
            self._mp4[name] = path.read_bytes()
        return self._mp4[name]

    def _opus_fixture(self, index: int, seconds: int) -> bytes:
        key = (index, seconds)
        if key not in self._opus:
            self._opus[key] = trim_opus(self.fixture(index), seconds)
        return self._opus[key]

    def _pcm_fixture(self, index: int, seconds: int) -> bytes:
        key = (index, seconds)
        if key not in self._pcm:
            self._pcm[key] = b"".join(pcm_block(index, s) for s in range(seconds))
        return self._pcm[key]

    def serials(self, spec: RecordingSpec) -> list[int]:
        key = (spec.id, spec.segments)
        if key not in self._serials:
            self._serials[key] = segment_serials(spec.id, spec.segments)
        return self._serials[key]

    def segment(self, spec: RecordingSpec, index: int, codec: str) -> bytes:
        fixture = index % FIXTURES
        if codec == "pcm":
            return self._pcm_fixture(fixture, spec.segment_seconds)
        if codec == "opus":
            base = self._opus_fixture(fixture, spec.segment_seconds)
            return ogg.reserial(base, self.serials(spec)[index])
        raise ValueError(f"unknown codec {codec!r}")

    def body(self, spec: RecordingSpec, codec: str, indices: Sequence[int]) -> bytes:
        """The true body for these segment indices (in the order given)."""
        return b"".join(self.segment(spec, i, codec) for i in indices)

    def served(self, spec: RecordingSpec, codec: str, indices: Sequence[int]) -> tuple[bytes, str]:
        """The true body for these indices and its ``Repr-Digest`` value, cached."""
        key: tuple[object, ...]
        if codec == "pcm":
            # PCM depends on the fixtures only: recordings share their bodies.
            key = (codec, spec.segment_seconds, tuple(i % FIXTURES for i in indices))
        else:
            key = (codec, spec.id, spec.segments, spec.segment_seconds, tuple(indices))
        hit = self._served.get(key)
        if hit is not None:
            self._served.move_to_end(key)
            return hit
        body = self.body(spec, codec, indices)
        entry = (body, repr_digest(body))
        self._served[key] = entry
        self._served_bytes += len(body)
        while self._served_bytes > SERVED_CACHE_BYTES and len(self._served) > 1:
            _, (old, _digest) = self._served.popitem(last=False)
            self._served_bytes -= len(old)
        return entry

    def expected(self, spec: RecordingSpec, codec: str) -> tuple[int, str]:
        """``(bytes, sha256 hex)`` of the whole recording in ``codec``."""
        key = (spec.id, spec.segments, spec.segment_seconds, codec)
        if key not in self._expected:
            digest = hashlib.sha256()
            size = 0
            for index in range(spec.segments):
                chunk = self.segment(spec, index, codec)
                digest.update(chunk)
                size += len(chunk)
            self._expected[key] = (size, digest.hexdigest())
        return self._expected[key]
