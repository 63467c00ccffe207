"""`make demo` is one of the two commands a new user runs: it must pass as shipped."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cxstream.devservers import Missing, pg, s3


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


def test_the_cluster_demo_survives_a_killed_node_and_verifies_every_recording() -> None:
    try:
        pg.check()
        s3.check()
    except Missing as exc:
        pytest.skip(str(exc))
    done = subprocess.run(
        [sys.executable, "-m", "cxstream", "demo", "--nodes", "3"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
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
