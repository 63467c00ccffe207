"""Bounded listeners: connection caps, per-peer caps, idle and header deadlines (real sockets)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web

from cxstream.config import ListenerLimits
from cxstream.listeners import GuardedSite
from cxstream.metrics import Metrics
from cxstream.sim.server import SimServer
from tests.conftest import StartDaemon
from tests.harness import completed

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Listener:
    def __init__(self, runner: web.AppRunner, site: GuardedSite, metrics: Metrics) -> None:
        self.runner, self.site, self.metrics = runner, site, metrics
        self.port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"

    async def connect(self, source: str = "127.0.0.1") -> Conn:
        return await asyncio.open_connection("127.0.0.1", self.port, local_addr=(source, 0))

    def dropped(self, reason: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "cxstream_connections_dropped_total", {"listener": "test", "reason": reason}
        )
        return value or 0.0

    def open(self) -> float:
        value = self.metrics.registry.get_sample_value(
            "cxstream_connections_open", {"listener": "test"}
        )
        return value or 0.0


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "0")))
    body = await request.read()
    return web.Response(text=f"ok {len(body)}")


MakeListener = Callable[..., Awaitable[Listener]]


@pytest.fixture
async def listener() -> AsyncIterator[MakeListener]:
    runners: list[web.AppRunner] = []

    async def make(**limits: float) -> Listener:
        app = web.Application()
        app.router.add_route("*", "/", _slow)
        cfg = ListenerLimits(**limits)  # type: ignore[arg-type]
        runner = web.AppRunner(app, keepalive_timeout=cfg.keepalive_timeout_s + 1)
        await runner.setup()
        runners.append(runner)
        metrics = Metrics()
        site = GuardedSite(runner, "127.0.0.1", 0, limits=cfg, metrics=metrics, name="test")
        await site.start()
        return Listener(runner, site, metrics)

    yield make
    for runner in runners:
        await runner.cleanup()


async def _until(check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 5.0) -> None:
    """Poll ``check`` until it holds; fail after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while True:
            result = check()
            if await result if inspect.isawaitable(result) else result:
                return
            await asyncio.sleep(0.05)


async def _closed_by_server(conn: Conn, timeout_s: float = 5.0) -> bytes:
    """Everything the server sent until it closed; fails if it keeps the socket open."""
    reader, writer = conn
    async with asyncio.timeout(timeout_s):
        data = await reader.read()
    writer.close()
    return data


async def test_an_idle_connection_is_closed_after_the_keepalive_timeout(
    listener: MakeListener,
) -> None:
    server = await listener(keepalive_timeout_s=0.3, header_timeout_s=30)
    started = time.monotonic()
    assert await _closed_by_server(await server.connect()) == b""
    assert time.monotonic() - started >= 0.29
    assert server.dropped("keepalive_timeout") == 1 and server.open() == 0


async def test_a_head_that_never_completes_is_closed_after_the_header_timeout(
    listener: MakeListener,
) -> None:
    server = await listener(keepalive_timeout_s=30, header_timeout_s=0.4)
    reader, writer = await server.connect()
    started = time.monotonic()
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\n")
    # Dribbling more bytes does not buy time: the deadline runs from the first one.
    for _ in range(3):
        await asyncio.sleep(0.1)
        writer.write(b"X-Slow: 1\r\n")
    assert await _closed_by_server((reader, writer)) == b""
    assert 0.39 <= time.monotonic() - started < 5
    assert server.dropped("header_timeout") == 1


async def test_a_request_being_handled_is_not_cut_and_keepalive_resumes_after(
    listener: MakeListener,
) -> None:
    server = await listener(keepalive_timeout_s=1.0, header_timeout_s=1.0)
    async with aiohttp.ClientSession() as http:
        # The handler takes longer than either deadline: neither applies inside a request.
        async with http.post(f"{server.url}/?s=1.5", data=b"x" * 10) as resp:
            assert resp.status == 200 and await resp.text() == "ok 10"
        # The same connection serves a second request within the keep-alive window.
        async with http.get(server.url) as resp:
            assert resp.status == 200
        assert server.dropped("keepalive_timeout") == 0
        await _until(lambda: not server.open())
    assert server.dropped("keepalive_timeout") == 1


async def test_one_peer_cannot_take_every_connection(listener: MakeListener) -> None:
    server = await listener(max_connections=100, max_connections_per_peer=3)
    held = [await server.connect("127.0.0.1") for _ in range(3)]
    answer = await _closed_by_server(await server.connect("127.0.0.1"))
    assert answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"Retry-After: 5\r\n" in answer and b"too many connections" in answer
    assert server.dropped("max_connections_per_peer") == 1
    # Another address is still served while the first holds its share.
    reader, writer = await server.connect("127.0.0.2")
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await _closed_by_server((reader, writer))).startswith(b"HTTP/1.1 200 OK")
    # A slot given back is a slot again.
    held[0][1].close()
    await _until(lambda: server.open() == 2)
    reader, writer = await server.connect("127.0.0.1")
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await _closed_by_server((reader, writer))).startswith(b"HTTP/1.1 200 OK")
    for _, writer in held[1:]:
        writer.close()


async def test_the_total_cap_holds_across_peers(listener: MakeListener) -> None:
    server = await listener(max_connections=3, max_connections_per_peer=100)
    held = [await server.connect(f"127.0.0.{i}") for i in (1, 2, 3)]
    answer = await _closed_by_server(await server.connect("127.0.0.4"))
    assert answer.startswith(b"HTTP/1.1 503")
    assert server.dropped("max_connections") == 1 and server.open() == 3
    for _, writer in held:
        writer.close()


# -- the daemon ------------------------------------------------------------


async def _open_many(host: str, port: int, count: int) -> list[Conn]:
    conns: list[Conn] = []
    # In batches: the listen backlog is finite, and a dropped SYN costs a 1 s retransmit.
    for start in range(0, count, 100):
        batch = [asyncio.open_connection(host, port) for _ in range(start, min(count, start + 100))]
        conns += await asyncio.gather(*batch)
    return conns


async def _first_bytes(conn: Conn) -> bytes:
    """What the server sends unasked within a second (a refusal), else nothing."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1):
            return await conn[0].read(4096)
    return b""


async def _metric(http: aiohttp.ClientSession, admin_url: str, line: str) -> float:
    async with http.get(f"{admin_url}/metrics") as resp:
        text = await resp.text()
    for row in text.splitlines():
        if row.startswith(line + " "):
            return float(row.split()[-1])
    return 0.0


async def test_daemon_a_good_webhook_is_answered_while_1000_idle_connections_are_held(
    sim: SimServer, start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    sim.add_recording({"id": "rec-busy", "segments": 1, "codecs": ["opus"]})
    daemon = await start_daemon(
        webhook={
            "max_connections": 2000,
            "max_connections_per_peer": 2000,
            "keepalive_timeout_s": 6,
            "header_timeout_s": 6,
        },
        admin={"max_connections_per_peer": 2},
    )
    host, port = daemon.webhook_url.split("/")[2].rsplit(":", 1)
    idle = await _open_many(host, int(port), 1000)
    half = await _open_many(host, int(port), 50)
    for _, writer in half:
        writer.write(b"POST /webhooks/cxone HTTP/1.1\r\nHost: x\r\nContent-Ty")
    opened = 'cxstream_connections_open{listener="webhook"}'
    try:

        async def all_held() -> bool:
            return await _metric(http, daemon.admin_url, opened) >= 1050

        await _until(all_held, timeout_s=10)
        started = time.monotonic()
        async with asyncio.timeout(5):
            status, _ = await daemon.post(http, completed("rec-busy"))
        assert status == 202, status
        latency = time.monotonic() - started
        # Still all held when the good webhook was answered.
        assert await _metric(http, daemon.admin_url, opened) >= 1050, latency
        await daemon.wait_event("recording.completed", recording_id="rec-busy")

        # The server, not the client, ends every one of them once its deadline passes.
        answers = await asyncio.gather(
            *(_closed_by_server(conn, timeout_s=30) for conn in idle + half)
        )
        assert set(answers) == {b""}
        dropped = 'cxstream_connections_dropped_total{listener="webhook",reason="%s"}'
        assert await _metric(http, daemon.admin_url, dropped % "keepalive_timeout") >= 1000
        assert await _metric(http, daemon.admin_url, dropped % "header_timeout") == 50

        # The admin listener has caps of its own (two per peer here; the scrapes
        # above may still hold one): of three more, at least one is turned away.
        admin_host, admin_port = daemon.admin_url.split("/")[2].rsplit(":", 1)
        admin = await _open_many(admin_host, int(admin_port), 3)
        firsts = await asyncio.gather(*(_first_bytes(conn) for conn in admin))
        assert any(first.startswith(b"HTTP/1.1 503") for first in firsts), firsts
        for _, writer in admin:
            writer.close()
    finally:
        for _, writer in idle + half:
            with contextlib.suppress(Exception):
                writer.close()
    assert await daemon.stop() == 0
