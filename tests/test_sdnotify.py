"""sd_notify against a real AF_UNIX datagram socket: in process, and from a daemon subprocess.

The socket plays systemd's part: it receives what the daemon says (READY=1,
STATUS=, WATCHDOG=1, RELOADING=1, STOPPING=1) exactly as PID 1 would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cxstream.sdnotify import SdNotify, monotonic_usec
from cxstream.sim.server import SimServer
from tests.harness import Daemon, write_config


class Listener:
    """A bound datagram socket; ``messages`` fills as datagrams arrive (loop reader)."""

    def __init__(self, address: str) -> None:
        self.address = address  # as NOTIFY_SOCKET spells it
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)
        self.messages: list[tuple[float, list[str]]] = []
        self._arrived = asyncio.Event()

    def attach(self) -> None:
        asyncio.get_running_loop().add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            self.messages.append((time.monotonic(), data.decode().split("\n")))
            self._arrived.set()

    def recv_now(self) -> list[list[str]]:
        """Drain without the loop (for tests whose loop is deliberately blocked)."""
        self._read()
        return [m for _, m in self.messages]

    def fields(self) -> list[str]:
        return [f for _, m in self.messages for f in m]

    def has(self, field: str) -> bool:
        return field in self.fields()

    async def next(self) -> None:
        self._arrived.clear()
        await self._arrived.wait()

    async def wait_pings(self, n: int, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while self.fields().count("WATCHDOG=1") < n:
                await self.next()

    async def wait_for(self, field_prefix: str, timeout_s: float = 20.0) -> list[str]:
        async with asyncio.timeout(timeout_s):
            while True:
                for _, message in self.messages:
                    if any(f.startswith(field_prefix) for f in message):
                        return message
                await self.next()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # no loop: nothing was attached
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self.sock.close()


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Listener]:
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
    else:
        address = f"@cxstream-test-{uuid.uuid4().hex}"
    sock = Listener(address)
    yield sock
    sock.sock.close()


async def test_notify_reaches_the_socket(listener: Listener) -> None:
    notify = SdNotify({"NOTIFY_SOCKET": listener.address})
    assert notify.enabled
    assert notify.notify("READY=1", "STATUS=2 active streams, 0 queued jobs")
    assert notify.notify("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")
    notify.close()
    got = listener.recv_now()
    assert got[0] == ["READY=1", "STATUS=2 active streams, 0 queued jobs"]
    assert got[1][0] == "RELOADING=1"
    # The same clock systemd compares with: now, in microseconds, never ahead of us.
    sent = int(got[1][1].removeprefix("MONOTONIC_USEC="))
    assert 0 < monotonic_usec() - sent < 5_000_000


def test_without_notify_socket_nothing_is_sent() -> None:
    for env in ({}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "relative/path"}):
        notify = SdNotify(env)
        assert not notify.enabled and not notify.notify("READY=1")
    # systemd went away (the socket is gone): a failed send is False, not an exception.
    notify = SdNotify({"NOTIFY_SOCKET": "/nonexistent/notify.sock"})
    assert notify.enabled and not notify.notify("READY=1")


def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_us() -> None:
    me = str(os.getpid())
    assert SdNotify({"WATCHDOG_USEC": "30000000"}).watchdog_s == 15.0
    assert SdNotify({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": me}).watchdog_s == 1.0
    assert SdNotify({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}).watchdog_s is None
    for bad in ("", "0", "-5", "soon"):
        assert SdNotify({"WATCHDOG_USEC": bad}).watchdog_s is None


@pytest.fixture
async def attached(listener: Listener) -> AsyncIterator[Listener]:
    listener.attach()
    yield listener
    listener.close()


async def test_watchdog_pings_from_the_loop_and_stop_when_it_blocks(attached: Listener) -> None:
    notify = SdNotify({"NOTIFY_SOCKET": attached.address, "WATCHDOG_USEC": "200000"})
    assert notify.watchdog_s == 0.1
    task = asyncio.create_task(notify.watchdog())
    blocked = asyncio.Event()
    during: list[int] = []

    def block_the_loop() -> None:
        # A callback that never yields, as a bug or a blocking call would:
        # ten ping intervals long. Drained directly, without the loop.
        before = len(attached.recv_now())
        time.sleep(1.0)
        during.append(len(attached.recv_now()) - before)
        blocked.set()

    try:
        await attached.wait_pings(3)  # pings arrive while the loop runs
        asyncio.get_running_loop().call_soon(block_the_loop)
        await blocked.wait()
        assert during == [0]  # not one ping while the loop was blocked
        seen = len(attached.messages)
        await attached.wait_pings(seen + 2)  # and they resume once it is free
    finally:
        task.cancel()
        notify.close()


async def test_daemon_tells_systemd_ready_watchdog_reload_and_stopping(
    tmp_path: Path, sim: SimServer
) -> None:
    sock = Listener(str(tmp_path / "notify.sock"))
    sock.attach()
    try:
        daemon = Daemon(
            write_config(tmp_path, sim),
            env={"NOTIFY_SOCKET": sock.address, "WATCHDOG_USEC": "400000"},
        )
        await daemon.start()
        ready = await sock.wait_for("READY=1")
        assert "STATUS=0 active streams, 0 queued jobs" in ready, ready
        assert daemon.find("daemon.started") and daemon.find("journal.opened")
        await sock.wait_pings(3)  # every 0.2 s: half of WATCHDOG_USEC
        assert not sock.has("RELOADING=1")
        await daemon.signal(signal.SIGHUP)
        reloading = await sock.wait_for("RELOADING=1")
        assert any(f.startswith("MONOTONIC_USEC=") for f in reloading)
        async with asyncio.timeout(10):
            while sock.fields().count("READY=1") < 2:
                await sock.next()
        assert await daemon.stop() == 0
        stopping = await sock.wait_for("STOPPING=1")
        assert any(f.startswith("STATUS=stopping") for f in stopping)
        assert not daemon.find("daemon.failed")
    finally:
        sock.close()
