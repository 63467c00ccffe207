"""Prove that tests do not lean on each other: each file alone, or each test alone.

    python -m tests.isolation                     # every test file, one pytest run each
    python -m tests.isolation tests/test_webhook_jobs.py ...   # each test id alone

Runs one pytest process at a time (the machine may be shared), in file order
(``-p no:randomly``), and prints one line per run that failed; exit 1 if any did.
Order is the other half: ``pytest -p randomly -p no:cacheprovider --randomly-seed=N``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _pytest(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def _ids(files: list[str]) -> list[str]:
    done = _pytest("--collect-only", *files)
    return [line for line in done.stdout.splitlines() if "::" in line]


def main(argv: list[str]) -> int:
    runs = _ids(argv) if argv else [str(p) for p in sorted(TESTS.rglob("test_*.py"))]
    failed = 0
    started = time.monotonic()
    for target in runs:
        done = _pytest(target)
        if done.returncode != 0:
            failed += 1
            tail = (done.stdout + done.stderr).strip().splitlines()[-1:]
            print(f"FAILED alone: {target}: {' '.join(tail)}", flush=True)
    took = time.monotonic() - started
    print(f"{len(runs) - failed}/{len(runs)} passed alone in {took:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
