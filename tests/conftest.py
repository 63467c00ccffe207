"""Shared fixtures: a simulator per test, and a daemon process started against it on demand.

Most tests need no process: tests/inproc.py (the fetch core) and tests/ingress.py
(the webhook) build the daemon's own parts in process.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cxstream.sim.server import SimServer
from tests.harness import ARCHIVE_SECRET, CLIENT_ID, CLIENT_SECRET, Daemon, write_config
from tests.pg import Cluster, cluster
from tests.s3server import running as s3_running


@pytest.fixture(autouse=True)
def reap_daemons() -> Iterator[None]:
    """Kill any daemon this test started and did not stop (a failed assertion, say).

    Synchronous, and limited to the processes this test started.
    """
    first = len(Daemon.started)
    yield
    for proc in Daemon.started[first:]:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
    del Daemon.started[first:]


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(
        (), client_id=CLIENT_ID, client_secret=CLIENT_SECRET, archive_secret=ARCHIVE_SECRET
    ) as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


StartDaemon = Callable[..., Awaitable[Daemon]]


@pytest.fixture
async def start_daemon(tmp_path: Path, sim: SimServer) -> AsyncIterator[StartDaemon]:
    started: list[Daemon] = []

    async def start(**overrides: dict[str, Any]) -> Daemon:
        daemon = Daemon(write_config(tmp_path, sim, **overrides))
        await daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.proc is not None and daemon.proc.returncode is None:
            await daemon.stop()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL cluster for the whole run (skips if not installed)."""
    with cluster() as running:
        yield running


@pytest.fixture
def pg_dsn(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh, empty database per test."""
    dsn = pg_cluster.new_database()
    yield dsn
    pg_cluster.drop_database(dsn)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """One S3 endpoint process (moto + checksum verification) for the whole run."""
    pytest.importorskip("moto", reason="moto not installed (pip install -e '.[test]')")
    with s3_running() as url:
        yield url
