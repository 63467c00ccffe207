"""`make demo` is one of the two commands a new user runs: it must pass as shipped."""

from __future__ import annotations

import subprocess
import sys


def test_demo_archives_and_verifies_every_recording() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cxstream", "demo"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "12/12 recordings verified" in done.stdout
    assert "daemon exit status 0" in done.stdout
    assert "Traceback" not in done.stderr
