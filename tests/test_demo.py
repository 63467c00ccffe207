"""`make demo` is one of the two commands a new user runs: each platform's demo must
pass as shipped (the real daemon as a subprocess against that platform's simulator)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cxstream.devservers import Missing, pg, s3

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


def test_the_cluster_demo_survives_a_killed_node_and_verifies_every_recording() -> None:
    try:
        pg.check()
        s3.check()
    except Missing as exc:
        pytest.skip(str(exc))
    done = _demo("--nodes", "3")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "12/12 recordings verified in s3://cxstream-demo/recordings/" in done.stdout
    assert "(24 objects: each recording once, with its sidecar)" in done.stdout
    (killed,) = [line for line in done.stdout.splitlines() if "killed (SIGKILL) at" in line]
    assert killed.startswith("node-") and "PROBLEM" not in done.stdout
    assert "Traceback" not in done.stderr


def test_the_cluster_demo_without_postgresql_says_so_in_one_line_and_exits_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cxstream", "demo", "--nodes", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PG_BINDIR": "/nonexistent/bin"},
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "cxstream demo: the cluster demo needs PostgreSQL and moto: PostgreSQL server"
        " binaries not found in PG_BINDIR=/nonexistent/bin (apt-get install postgresql)"
    ]


def test_the_cluster_demo_is_the_stream_demo_only() -> None:
    done = _demo("--nodes", "3", "--platform", "genesys")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == ["cxstream demo: --nodes runs the cxone-stream demo only"]
