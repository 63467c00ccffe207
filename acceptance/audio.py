"""Real audio for the fakes, made with Debian's ffmpeg (flite voice)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

TEXTS = [
    "Thank you for calling. Your call may be recorded for quality and training purposes.",
    "I would like to check the status of my order number four five seven two.",
    "Please hold while I transfer you to the billing department.",
    "Your refund has been approved and will arrive within five business days.",
    "Is there anything else I can help you with today? Goodbye.",
    "The technician will visit on Tuesday between nine and eleven in the morning.",
]


def _ff(args: list[str]) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make(out: Path, name: str, kind: str, text_idx: int) -> Path:
    """kind: mp4 (AAC), mp4fs (AAC, moov first), opus (Ogg Opus), wav (PCM 16-bit 8 kHz)."""
    text = TEXTS[text_idx % len(TEXTS)].replace("'", "").replace(",", " ").replace("?", ".")
    src = ["-f", "lavfi", "-i", f"flite=text='{text}':voice=slt"]
    if kind == "mp4":
        p = out / f"{name}.mp4"
        _ff([*src, "-ar", "16000", "-ac", "1", "-c:a", "aac", "-b:a", "48k", str(p)])
    elif kind == "mp4fs":
        p = out / f"{name}.mp4"
        _ff([*src, "-ar", "16000", "-ac", "1", "-c:a", "aac", "-b:a", "48k", "-movflags", "+faststart", str(p)])
    elif kind == "opus":
        p = out / f"{name}.ogg"
        _ff([*src, "-ar", "16000", "-ac", "1", "-c:a", "libopus", "-b:a", "24k", str(p)])
    elif kind == "wav":
        p = out / f"{name}.wav"
        _ff([*src, "-ar", "8000", "-ac", "1", "-c:a", "pcm_s16le", str(p)])
    else:
        raise ValueError(kind)
    return p


def duration_ms(p: Path) -> int:
    r = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(p)],
        check=True, capture_output=True, text=True,
    )
    return int(float(json.loads(r.stdout)["format"]["duration"]) * 1000)
