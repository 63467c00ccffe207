"""Listeners no client can hold: caps on connections, deadlines while nothing is asked.

aiohttp serves any number of connections and, while it waits for a request,
only its keep-alive timer limits how long a socket may sit idle or dribble a
request head. So each listener's sockets go through a guard, a thin protocol
in front of aiohttp's own (``web.Server`` still does all the HTTP):

- at most ``max_connections`` at once, and ``max_connections_per_peer`` from
  one address, so a single client cannot take them all; one over either cap
  gets a canned ``503`` + ``Retry-After`` and is closed at once, before any
  HTTP parsing;
- a connection that is not in a request is closed after
  ``keepalive_timeout_s`` without a byte (a new connection, or one between
  requests), or ``header_timeout_s`` after the first byte of a request head
  that never completes. Inside a request the handler's own limits apply (the
  webhook's ``body_timeout_s``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from cxstream.config import ListenerLimits
from cxstream.metrics import Metrics

_BODY = b'{"error":"unavailable","reason":"too many connections"}'
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Retry-After: 5\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n\r\n%s" % (len(_BODY), _BODY)
)
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class _Guard:
    """One listener's accounting; ``loop.create_server`` calls it for each socket."""

    def __init__(
        self, server: web.Server, limits: ListenerLimits, metrics: Metrics, name: str
    ) -> None:
        self.server = server
        self.limits = limits
        self.name = name
        self.open = 0
        self.per_peer: Counter[str] = Counter()
        self.by_handler: dict[RequestHandler, _Connection] = {}
        self.gauge = metrics.connections.labels(listener=name)
        self.dropped = metrics.connections_dropped
        # Every request passes here on its way to the app: how a connection
        # learns that its request head is complete, and when it is answered.
        inner = server.request_handler

        async def handle(request: web.BaseRequest) -> web.StreamResponse:
            conn = self.by_handler.get(request.protocol)
            if conn is not None:
                conn.request_started()
            try:
                return await inner(request)
            finally:
                if conn is not None:
                    conn.request_done()

        server.request_handler = handle

    def __call__(self) -> _Connection:
        return _Connection(self)

    def admit(self, peer: str) -> str | None:
        """None if ``peer`` may connect now, else why not."""
        if self.open >= self.limits.max_connections:
            return "max_connections"
        if self.per_peer[peer] >= self.limits.max_connections_per_peer:
            return "max_connections_per_peer"
        self.open += 1
        self.per_peer[peer] += 1
        self.gauge.inc()
        return None

    def release(self, peer: str) -> None:
        self.open -= 1
        self.per_peer[peer] -= 1
        if not self.per_peer[peer]:
            del self.per_peer[peer]
        self.gauge.dec()


class _Connection(asyncio.Protocol):
    def __init__(self, guard: _Guard) -> None:
        self.guard = guard
        self.inner: RequestHandler | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.in_request = False
        self.deadline: asyncio.TimerHandle | None = None
        self.phase = "keepalive_timeout"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        peername = transport.get_extra_info("peername")
        self.peer = str(peername[0]) if peername else "unknown"
        refused = self.guard.admit(self.peer)
        if refused is not None:
            self.guard.dropped.labels(listener=self.guard.name, reason=refused).inc()
            transport.write(BUSY)
            transport.close()
            return
        self.transport = transport
        self.inner = self.guard.server()
        self.guard.by_handler[self.inner] = self
        self.inner.connection_made(transport)
        self._arm("keepalive_timeout", self.guard.limits.keepalive_timeout_s)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        if not self.in_request and self.phase == "keepalive_timeout":
            # The first byte of a request head: from now on it must complete in time.
            self._arm("header_timeout", self.guard.limits.header_timeout_s)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        # aiohttp's answer is None (close the transport), whatever the state.
        if self.inner is not None:
            self.inner.eof_received()
        return None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        inner, self.inner = self.inner, None
        if inner is None:
            return
        self.guard.release(self.peer)
        self.guard.by_handler.pop(inner, None)
        inner.connection_lost(exc)

    def request_started(self) -> None:
        self.in_request = True
        self._disarm()

    def request_done(self) -> None:
        self.in_request = False
        if self.inner is not None:
            self._arm("keepalive_timeout", self.guard.limits.keepalive_timeout_s)

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self.phase = phase
        self.deadline = asyncio.get_running_loop().call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _expire(self) -> None:
        self.deadline = None
        if self.transport is not None and not self.in_request:
            self.guard.dropped.labels(listener=self.guard.name, reason=self.phase).inc()
            self.transport.close()


class GuardedSite(web.BaseSite):
    """A TCP site whose sockets go through a guard (see the module docstring)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        limits: ListenerLimits,
        metrics: Metrics,
        name: str,
    ) -> None:
        super().__init__(runner)
        self._host, self._port = host, port
        assert runner.server is not None
        self._guard = _Guard(runner.server, limits, metrics, name)

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._guard, self._host, self._port, backlog=self._backlog
        )
