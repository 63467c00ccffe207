"""`make demo` is one of the two commands a new user runs: each platform's demo must
pass as shipped (the real daemon as a subprocess against that platform's simulator)."""

from __future__ import annotations

import subprocess
import sys

import pytest

# (platform, recordings it must verify, a row that proves the platform's own path)
DEMOS = [
    ("cxone-stream", 12, "rec-0010   verified    pcm"),
    # 7100002's second voice file became a job of its own (fan-out).
    ("cxone-playback", 11, "7100002-2  verified    mp4"),
    # A recording only available as WAV: OGG_OPUS refused, the next format asked.
    ("genesys", 10, "9a7e0c42-0006-4b8d-8f10-2c3d4e5f6a06 verified    wav"),
]


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cxstream", "demo", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.parametrize(("platform", "count", "row"), DEMOS, ids=[d[0] for d in DEMOS])
def test_demo_archives_and_verifies_every_recording(platform: str, count: int, row: str) -> None:
    # The stream API is what `cxstream demo` runs when no platform is named.
    done = _demo() if platform == "cxone-stream" else _demo("--platform", platform)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{count}/{count} recordings verified" in done.stdout
    assert "daemon exit status 0" in done.stdout
    assert row in done.stdout
    assert "Traceback" not in done.stderr


def test_demo_refuses_an_unknown_platform_in_one_line() -> None:
    done = _demo("--platform", "avaya")
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1
    assert "--platform" in done.stderr and "invalid choice" in done.stderr
