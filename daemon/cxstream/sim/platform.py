"""What the CXone Media Playback and Genesys simulators share.

Each runs three aiohttp applications on their own loopback ports, because
the real platforms put them on different hosts and a client that mixes them
up must fail here too: the auth host (discovery and tokens), the API host
(lookups, plus the archive sink and ``/_sim``) and the media host. State is
a :class:`~cxstream.sim.state.SimState` (tokens, archive announcements,
change notification) plus the media host and an optional rate limit.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Self

import orjson
from aiohttp import web

from cxstream.sim.archive import (
    WEBHOOK_KEY,
    handle_archive,
    handle_archive_config,
    handle_archive_list,
    make_webhook,
)
from cxstream.sim.control import handle_stats
from cxstream.sim.media import MediaHost
from cxstream.sim.responses import json_response
from cxstream.sim.state import STATE_KEY, Announcement, SimState

SHUTDOWN_TIMEOUT_S = 2.0


class RateLimit:
    """A sliding window: at most ``limit`` requests in any ``window_s`` seconds."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_s = window_s
        self._times: deque[float] = deque()

    def take(self) -> float | None:
        """None if the request may go ahead (and count it), else seconds until it could."""
        now = time.monotonic()
        while self._times and now - self._times[0] >= self.window_s:
            self._times.popleft()
        if len(self._times) >= self.limit:
            return self.window_s - (now - self._times[0])
        self._times.append(now)
        return None


class PlatformState(SimState):
    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        archive_secret: str,
        token_ttl: float,
        url_ttl_s: float,
        rate_limit: int,
        rate_window_s: float,
    ) -> None:
        super().__init__(
            (),
            client_id=client_id,
            client_secret=client_secret,
            archive_secret=archive_secret,
            token_ttl=token_ttl,
        )
        self.media = MediaHost(self.notify, self.shutdown, url_ttl_s)
        self.rate = RateLimit(rate_limit, rate_window_s) if rate_limit else None
        self.rate_limited = 0
        self.token_requests: dict[str, int] = {}
        # Base URL of each application ("auth", "api", "media"), once listening.
        self.urls: dict[str, str] = {}

    def count_token_request(self, outcome: str) -> None:
        self.token_requests[outcome] = self.token_requests.get(outcome, 0) + 1
        self.notify()

    def throttled(self) -> float | None:
        """Seconds to wait when the rate limit is exhausted, else None (request counted)."""
        if self.rate is None:
            return None
        wait = self.rate.take()
        if wait is not None:
            self.rate_limited += 1
            self.notify()
        return wait

    def snapshot(self) -> dict[str, Any]:
        return {
            "tokens_issued": self.tokens_issued,
            "token_requests": dict(self.token_requests),
            "rate_limited": self.rate_limited,
            "media": {key: asdict(st) for key, st in self.media.stats.items()},
        }


def iso(seconds: float) -> str:
    """RFC 3339 UTC with milliseconds, as both platforms write times."""
    return (
        datetime.fromtimestamp(seconds, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def add_common_routes(app: web.Application, state: PlatformState, archive_secret: str) -> None:
    """The archive sink of contract §3 and ``/_sim/stats`` / ``/_sim/archive``."""
    app[STATE_KEY] = state
    app[WEBHOOK_KEY] = make_webhook(archive_secret)
    app.router.add_post("/archive", handle_archive)
    app.router.add_get("/_sim/stats", handle_stats)
    app.router.add_get("/_sim/archive", handle_archive_list)
    app.router.add_post("/_sim/archive/config", handle_archive_config)

    async def expire_urls(_request: web.Request) -> web.StreamResponse:
        state.media.expire_urls()
        return json_response({"expired": "urls"})

    async def expire_tokens(_request: web.Request) -> web.StreamResponse:
        state.expire_tokens()
        return json_response({"expired": "tokens"})

    app.router.add_post("/_sim/expire-urls", expire_urls)
    app.router.add_post("/_sim/expire-tokens", expire_tokens)


def add_entries_route(
    app: web.Application, path: str, parse: Callable[[Any], Any], add: Callable[[Any], None]
) -> None:
    """``POST path`` with one entry or a list: validated all first, then added or replaced."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            data = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return json_response({"error": "invalid_json"}, 400)
        try:
            entries = [parse(item) for item in (data if isinstance(data, list) else [data])]
        except ValueError as exc:
            return json_response({"error": "invalid_spec", "reason": str(exc)}, 400)
        for entry in entries:
            add(entry)
        return json_response({"added": [entry.id for entry in entries]})

    app.router.add_post(path, handle)


class PlatformServer:
    """Runs a platform simulator's applications, one loopback port each."""

    def __init__(self, state: PlatformState, host: str, ports: dict[str, int]) -> None:
        self.state = state
        self._host = host
        self._ports = ports
        self._runners: list[web.AppRunner] = []
        self.urls = state.urls

    def build(self, name: str) -> web.Application:  # pragma: no cover - overridden
        raise NotImplementedError(name)

    async def start(self) -> None:
        try:
            for name, port in self._ports.items():
                self.urls[name] = await self._serve(self.build(name), port)
                if name == "media":
                    self.state.media.base_url = self.urls[name]
        except BaseException:
            await self.stop()
            raise

    async def _serve(self, app: web.Application, port: int) -> str:
        async def on_shutdown(_app: web.Application) -> None:
            self.state.shutdown.set()

        app.on_shutdown.append(on_shutdown)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, self._host, port)
        await site.start()
        host, bound = runner.addresses[0][:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{bound}"

    async def stop(self) -> None:
        self.state.shutdown.set()
        while self._runners:
            await self._runners.pop().cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def media_url(self) -> str:
        return self.urls.get("media", "")

    @property
    def archive_url(self) -> str:
        return f"{self.urls.get('api', '')}/archive"

    @property
    def stats_url(self) -> str:
        return f"{self.urls.get('api', '')}/_sim/stats"

    @property
    def media(self) -> MediaHost:
        return self.state.media

    @property
    def announcements(self) -> list[Announcement]:
        return self.state.announcements

    def expire_urls(self) -> None:
        """Every media URL handed out so far answers as expired from now on."""
        self.state.media.expire_urls()

    def expire_tokens(self) -> None:
        """Every access token issued so far is invalid from now on."""
        self.state.expire_tokens()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Block until ``predicate()`` holds (re-checked on every state change)."""
        await self.state.wait_for(predicate, timeout_s)
