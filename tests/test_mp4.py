"""Whole-file container checks on real files: MP4 (the committed fixtures), WAV, Ogg Opus."""

from __future__ import annotations

import struct
import wave
from importlib import resources
from pathlib import Path

import pytest

from cxstream.formats import FormatError
from cxstream.formats.check import check_file
from cxstream.formats.mp4 import Mp4Error, check_mp4, check_mp4_file
from cxstream.formats.ogg import OggError, check_opus, check_opus_file
from cxstream.formats.wav import WavError, check_wav, check_wav_file, header
from cxstream.sim.audio import AudioLibrary
from cxstream.sim.spec import RecordingSpec


def fixture(name: str) -> bytes:
    return resources.files("cxstream.sim").joinpath("audio", name).read_bytes()


def top_boxes(data: bytes) -> list[tuple[str, int, int]]:
    """(type, offset, size) of the fixtures' top-level boxes (all 32-bit sizes)."""
    out, pos = [], 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        out.append((kind.decode(), pos, size))
        pos += size
    return out


def box_at(data: bytes, kind: bytes) -> int:
    """Offset of the first box of type ``kind`` (its size field), anywhere in the file."""
    return data.index(kind) - 4


def write(tmp_path: Path, data: bytes, name: str = "f.mp4") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def mp4_fails(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(Mp4Error, match=reason):
        check_mp4_file(write(tmp_path, data))


# -- MP4 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "seconds", "layout"),
    [
        ("call15.mp4", 15.0, ("ftyp", "moov", "free", "mdat")),
        ("call30.mp4", 30.0, ("ftyp", "free", "mdat", "moov")),
    ],
)
async def test_mp4_fixtures_pass(name: str, seconds: float, layout: tuple[str, ...]) -> None:
    path = resources.files("cxstream.sim").joinpath("audio", name)
    info = await check_mp4(str(path))
    assert info.boxes == layout
    assert info.size == len(fixture(name))
    assert info.duration_s == pytest.approx(seconds, abs=0.001)
    # The track itself carries the AAC priming the edit list hides.
    assert seconds < info.media_duration_s < seconds + 0.2
    assert info.codec == "mp4a.40.2"
    assert info.sample_rate == 8000


@pytest.mark.parametrize("name", ["call15.mp4", "call30.mp4"])
@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_mp4_truncated_fails(tmp_path: Path, name: str, keep: float) -> None:
    data = fixture(name)
    cut = data[: max(1, int(len(data) * keep))]
    mp4_fails(tmp_path, cut, "truncated|trailing bytes|cut")


def test_mp4_truncated_by_one_byte_fails(tmp_path: Path) -> None:
    data = fixture("call15.mp4")
    mp4_fails(tmp_path, data[:-1], r"'mdat' at byte \d+ claims \d+ bytes .* file truncated")


@pytest.mark.parametrize(
    ("junk", "reason"),
    [
        (b"JUNKJUNKJUNK", "claims .* file truncated"),
        (b"\x00" * 32, "not a four-character code"),
        (b"abc", "3 trailing bytes"),
        (b"\x00\x00\x00\x08free", None),  # a well-formed box is not junk
    ],
)
@pytest.mark.parametrize("name", ["call15.mp4", "call30.mp4"])
def test_mp4_junk_appended_fails(
    tmp_path: Path, name: str, junk: bytes, reason: str | None
) -> None:
    data = fixture(name) + junk
    if reason is None:
        assert check_mp4_file(write(tmp_path, data)).boxes[-1] == "free"
    else:
        mp4_fails(tmp_path, data, reason)


def test_mp4_top_level_size_lies_fails(tmp_path: Path) -> None:
    data = bytearray(fixture("call15.mp4"))
    moov = box_at(data, b"moov")
    size = struct.unpack_from(">I", data, moov)[0]
    # +8 would swallow the 8-byte 'free' after it whole: a valid file. +12 cannot be.
    struct.pack_into(">I", data, moov, size + 12)
    mp4_fails(tmp_path, bytes(data), "4 trailing bytes .* inside 'moov' are not a box")
    struct.pack_into(">I", data, moov, len(data))
    mp4_fails(tmp_path, bytes(data), "'moov' at byte 28 claims .* file truncated")
    struct.pack_into(">I", data, moov, size - 8)
    mp4_fails(tmp_path, bytes(data), "overruns|claims .* parent ends|not a")
    struct.pack_into(">I", data, moov, 4)
    mp4_fails(tmp_path, bytes(data), "size 4, less than its header")


def test_mp4_nested_size_lies_fails(tmp_path: Path) -> None:
    data = bytearray(fixture("call30.mp4"))
    trak = box_at(data, b"trak")
    size = struct.unpack_from(">I", data, trak)[0]
    struct.pack_into(">I", data, trak, size + 64)
    mp4_fails(tmp_path, bytes(data), r"box 'moov/trak' at byte \d+ claims \d+ bytes but its parent")


def test_mp4_without_audio_track_fails(tmp_path: Path) -> None:
    data = fixture("call15.mp4").replace(b"soun", b"vide", 1)
    mp4_fails(tmp_path, data, r"no audio track \(track handlers: 'vide'\)")


def test_mp4_chunk_offset_outside_mdat_fails(tmp_path: Path) -> None:
    data = bytearray(fixture("call15.mp4"))
    stco = box_at(data, b"stco")
    struct.pack_into(">I", data, stco + 16, 10)  # first chunk "at byte 10": inside ftyp
    mp4_fails(tmp_path, bytes(data), "audio chunk at byte 10 lies outside every 'mdat'")


def test_mp4_layout_rules(tmp_path: Path) -> None:
    data = fixture("call15.mp4")
    boxes = {kind: (off, size) for kind, off, size in top_boxes(data)}

    def without(kind: str) -> bytes:
        off, size = boxes[kind]
        return data[:off] + data[off + size :]

    mp4_fails(tmp_path, without("moov"), "0 'moov' boxes")
    mp4_fails(tmp_path, without("ftyp"), "first box is 'moov', not 'ftyp'")
    off, size = boxes["moov"]
    mp4_fails(tmp_path, data + data[off : off + size], "2 'moov' boxes")
    off, size = boxes["mdat"]
    # Without mdat the index points nowhere, but the missing box is named first.
    mp4_fails(tmp_path, data[:off], "no 'mdat' box")
    mp4_fails(tmp_path, b"", "empty file")


def test_mp4_largesize_and_size_zero_pass(tmp_path: Path) -> None:
    data = fixture("call15.mp4")
    boxes = {kind: (off, size) for kind, off, size in top_boxes(data)}
    free, _ = boxes["free"]
    mdat, mdat_size = boxes["mdat"]
    assert mdat == free + 8
    # ffmpeg's 8-byte 'free' is room for a 64-bit mdat header: same payload offset.
    large = data[:free] + struct.pack(">I4sQ", 1, b"mdat", mdat_size + 8) + data[mdat + 8 :]
    info = check_mp4_file(write(tmp_path, large))
    assert info.boxes == ("ftyp", "moov", "mdat")
    # Size 0: the last box runs to the end of the file.
    to_end = data[:mdat] + struct.pack(">I", 0) + data[mdat + 4 :]
    assert check_mp4_file(write(tmp_path, to_end)).duration_s == pytest.approx(15.0)
    # A 64-bit size that lies is still caught.
    lying = data[:free] + struct.pack(">I4sQ", 1, b"mdat", mdat_size + 9) + data[mdat + 8 :]
    mp4_fails(tmp_path, lying, "claims .* file truncated")


def test_mp4_not_an_mp4(tmp_path: Path) -> None:
    mp4_fails(tmp_path, fixture("seg0.opus"), "not a four-character code|claims")


# -- WAV ------------------------------------------------------------------------


def pcm(seconds: int) -> bytes:
    spec = RecordingSpec("wav-test", segments=seconds, segment_seconds=1, codecs=("pcm",))
    return AudioLibrary().body(spec, "pcm", range(seconds))


def wav_fails(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(WavError, match=reason):
        check_wav_file(write(tmp_path, data, "f.wav"))


async def test_wav_generated_passes(tmp_path: Path) -> None:
    samples = pcm(3)
    path = write(tmp_path, header(len(samples)) + samples, "f.wav")
    info = await check_wav(path)
    assert (info.format_tag, info.channels, info.sample_rate, info.bits_per_sample) == (
        1,
        1,
        8000,
        16,
    )
    assert info.data_bytes == len(samples)
    assert info.duration_s == 3.0


def test_wav_from_stdlib_with_extra_chunk_passes(tmp_path: Path) -> None:
    path = tmp_path / "std.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0\0\0" * 8000)
    data = path.read_bytes()
    # A LIST chunk with an odd length (so a pad byte) before 'data'.
    extra = b"LIST" + struct.pack("<I", 5) + b"INFOx\0"
    data = data[:36] + extra + data[36:]
    data = data[:4] + struct.pack("<I", len(data) - 8) + data[8:]
    info = check_wav_file(write(tmp_path, data, "f.wav"))
    assert (info.channels, info.sample_rate, info.duration_s) == (2, 16000, 0.5)


def test_wav_mulaw_passes(tmp_path: Path) -> None:
    body = b"\xff" * 8000
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8)
    riff = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 8000)
    data = b"RIFF" + struct.pack("<I", len(riff) + len(body)) + riff + body
    info = check_wav_file(write(tmp_path, data, "f.wav"))
    assert (info.format_tag, info.duration_s) == (7, 1.0)


def test_wav_damage_fails(tmp_path: Path) -> None:
    samples = pcm(1)
    good = header(len(samples)) + samples
    wav_fails(tmp_path, good[:-2], "RIFF header says 16044 bytes but the file has 16042")
    wav_fails(tmp_path, good + b"junk", "RIFF header says 16044 bytes but the file has 16048")
    wav_fails(tmp_path, b"RIFX" + good[4:], "not a RIFF/WAVE file")
    lying = bytearray(good)
    struct.pack_into("<I", lying, 40, len(samples) + 2)
    wav_fails(tmp_path, bytes(lying), "'data' at byte 36 claims 16002 bytes .* truncated")
    odd = bytearray(good + b"\0\0")
    struct.pack_into("<I", odd, 4, len(odd) - 8)
    struct.pack_into("<I", odd, 40, len(samples) + 1)
    wav_fails(tmp_path, bytes(odd), "16001 data bytes is not a whole number of 2-byte frames")
    fmt_only = good[:36]
    fmt_only = fmt_only[:4] + struct.pack("<I", 28) + fmt_only[8:]
    wav_fails(tmp_path, fmt_only, "no 'data' chunk")
    data_first = b"RIFF" + struct.pack("<I", 4 + 8 + 2) + b"WAVE" + b"data" + struct.pack("<I", 2)
    wav_fails(tmp_path, data_first + b"\0\0", "'data' chunk before 'fmt '")
    unsupported = bytearray(good)
    struct.pack_into("<H", unsupported, 20, 0x55)  # MP3 in WAV
    wav_fails(tmp_path, bytes(unsupported), "unsupported WAVE format tag 0x0055")
    inconsistent = bytearray(good)
    struct.pack_into("<I", inconsistent, 28, 12345)
    wav_fails(tmp_path, bytes(inconsistent), "inconsistent 'fmt '")


# -- Ogg Opus ---------------------------------------------------------------------


def opus_body(segments: int, seconds: int) -> bytes:
    spec = RecordingSpec("opus-test", segments=segments, segment_seconds=seconds)
    return AudioLibrary().body(spec, "opus", range(segments))


async def test_opus_duration_single_and_chained(tmp_path: Path) -> None:
    info = check_opus_file(write(tmp_path, fixture("seg0.opus"), "a.opus"))
    assert (info.links, info.duration_s) == (1, 15.0)
    info = await check_opus(write(tmp_path, opus_body(3, 7), "b.opus"))
    assert (info.links, info.duration_s) == (3, 21.0)


def test_opus_damage_fails(tmp_path: Path) -> None:
    good = opus_body(2, 15)
    for data, reason in [
        (good[:-100], "trailing bytes are not a whole page|not closed"),
        (good + b"junk" * 10, "no Ogg page|trailing bytes"),
        (good[:5000] + bytes([good[5000] ^ 0xFF]) + good[5001:], "CRC mismatch"),
        (b"", "no Ogg pages"),
    ]:
        with pytest.raises(OggError, match=reason):
            check_opus_file(write(tmp_path, data, "c.opus"))


# -- dispatch ---------------------------------------------------------------------


async def test_check_file_dispatches(tmp_path: Path) -> None:
    mp4 = await check_file(write(tmp_path, fixture("call15.mp4")), "mp4")
    assert (mp4.container, mp4.duration_s) == ("mp4", 15.0)
    samples = pcm(2)
    wav = await check_file(write(tmp_path, header(len(samples)) + samples, "f.wav"), "wav")
    assert (wav.container, wav.duration_s) == ("wav", 2.0)
    opus = await check_file(write(tmp_path, fixture("seg1.opus"), "f.opus"), "opus")
    assert (opus.container, opus.duration_s, opus.size) == ("opus", 15.0, 24554)
    with pytest.raises(FormatError, match="unknown container 'flac'"):
        await check_file(tmp_path / "f.opus", "flac")
    # Every container error is a FormatError, so a caller can catch one type.
    with pytest.raises(FormatError):
        await check_file(write(tmp_path, b"garbage", "g.mp4"), "mp4")
