"""Regenerate the simulator's MP4 fixtures (``sim/audio/call15.mp4``, ``call30.mp4``).

CXone's Media Playback API serves recordings as MP4 (platforms.md). These two
files are made once from the committed Opus speech fixtures with Debian's
``ffmpeg`` (``apt-get install ffmpeg``; made with 5.1) and committed, so
neither the tests nor the demo need ffmpeg::

    PYTHONPATH=daemon .venv/bin/python -m cxstream.sim.make_mp4_fixtures

Both are AAC-LC, mono, 8 kHz, 16 kbit/s in an MP4 (ISO BMFF) container:

- ``call15.mp4``: ``seg0.opus`` (15 s), ``-movflags +faststart`` (``moov``
  before ``mdat``, the layout of files meant for progressive playback);
- ``call30.mp4``: ``seg1.opus`` + ``seg2.opus`` (30 s), ``moov`` after
  ``mdat`` (ffmpeg's default), so the container check sees both layouts.

``-fflags +bitexact -map_metadata -1`` keep the encoder version and source
tags out, so a rerun with the same ffmpeg gives the same bytes. The AAC track
is 0.128 s longer than the speech (encoder priming in whole 1024-sample
frames); an edit list hides it, so ``mvhd`` says 15.000 s while ``mdhd``
says 15.128 s.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

AUDIO_DIR = Path(__file__).resolve().parent / "audio"
COMMON = [
    "-map_metadata",
    "-1",
    "-fflags",
    "+bitexact",
    "-flags:a",
    "+bitexact",
    "-c:a",
    "aac",
    "-b:a",
    "16k",
    "-ac",
    "1",
    "-ar",
    "8000",
]
# name -> (source segments, faststart)
FIXTURES: dict[str, tuple[tuple[int, ...], bool]] = {
    "call15.mp4": ((0,), True),
    "call30.mp4": ((1, 2), False),
}


def command(out: Path, segments: tuple[int, ...], faststart: bool) -> list[str]:
    cmd = ["ffmpeg", "-v", "error", "-y"]
    for index in segments:
        cmd += ["-i", str(AUDIO_DIR / f"seg{index}.opus")]
    if len(segments) > 1:
        inputs = "".join(f"[{i}:a]" for i in range(len(segments)))
        cmd += ["-filter_complex", f"{inputs}concat=n={len(segments)}:v=0:a=1[a]", "-map", "[a]"]
    cmd += COMMON
    if faststart:
        cmd += ["-movflags", "+faststart"]
    return [*cmd, str(out)]


def main() -> int:
    for name, (segments, faststart) in FIXTURES.items():
        out = AUDIO_DIR / name
        subprocess.run(command(out, segments, faststart), check=True)
        print(f"{out}: {out.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
