"""Regenerate the simulator's speech fixtures (``sim/audio/seg0.opus`` … ``seg3.opus``).

Run once by a developer, from the repository root, when the fixtures need to
change; the output is committed so that neither tests nor the demo need
espeak-ng or opus-tools::

    PYTHONPATH=daemon .venv/bin/python -m cxstream.sim.make_fixtures

Each fixture is a short espeak-ng utterance padded with silence to exactly
15.0 s (a whole segment) and encoded as mono Ogg Opus at 12 kbit/s, which
keeps each file around 20-30 KB. The encoder's serial number is pinned so a
rerun with the same tool versions produces the same bytes; the simulator
re-serials every segment anyway.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import wave
from pathlib import Path

AUDIO_DIR = Path(__file__).resolve().parent / "audio"
SEGMENT_SECONDS = 15.0
BITRATE_KBPS = "12"
PHRASES = (
    "Thank you for calling the customer care line. This call may be recorded "
    "for quality and training purposes. How can I help you today?",
    "I am sorry to hear that your order arrived damaged. Could you please read "
    "me the order number printed on the invoice?",
    "Thank you. I have found the order, and I can send a replacement today. "
    "It should arrive within three working days.",
    "Is there anything else I can help you with? Thank you for your patience, "
    "and have a wonderful day. Goodbye.",
)
VOICES = ("en-gb", "en-us", "en-gb+f3", "en-us+m3")


def pad_wav(src: Path, dst: Path, seconds: float) -> None:
    """Copy ``src`` to ``dst``, padded with (or cut to) exactly ``seconds`` of audio."""
    with wave.open(str(src), "rb") as rd:
        params = rd.getparams()
        frames = rd.readframes(params.nframes)
    if params.nchannels != 1 or params.sampwidth != 2:
        raise SystemExit(f"{src}: expected mono 16-bit output from espeak-ng, got {params}")
    want = round(seconds * params.framerate) * params.sampwidth
    frames = frames[:want].ljust(want, b"\0")
    with wave.open(str(dst), "wb") as wr:
        wr.setnchannels(1)
        wr.setsampwidth(2)
        wr.setframerate(params.framerate)
        wr.writeframes(frames)


def make_one(index: int, workdir: Path) -> Path:
    speech = workdir / f"speech{index}.wav"
    padded = workdir / f"padded{index}.wav"
    out = AUDIO_DIR / f"seg{index}.opus"
    voice = VOICES[index % len(VOICES)]
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(speech), PHRASES[index]], check=True)
    pad_wav(speech, padded, SEGMENT_SECONDS)
    subprocess.run(
        [
            "opusenc",
            "--quiet",
            "--speech",
            "--hard-cbr",
            "--bitrate",
            BITRATE_KBPS,
            "--serial",
            str(1000 + index),
            "--comment",
            f"TITLE=cxstream simulator segment {index}",
            str(padded),
            str(out),
        ],
        check=True,
    )
    return out


def main() -> int:
    AUDIO_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(len(PHRASES)):
            out = make_one(index, Path(tmp))
            print(f"{out}: {out.stat().st_size} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
