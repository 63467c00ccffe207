"""OAuth2 client-credentials token, cached and refreshed before it expires."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp

from cxstream.config import CxoneConfig
from cxstream.fetcher.errors import FetchError


class TokenSource:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: CxoneConfig,
        clock: Callable[[], float] = time.monotonic,
        on_refresh: Callable[[], object] | None = None,
    ) -> None:
        self._session = session
        self._config = config
        self._clock = clock
        self._on_refresh = on_refresh  # counts new tokens (a metric)
        self._token: str | None = None
        self._expires_at = 0.0
        # One refresh at a time: eight loops waking on an expired token must
        # not ask for eight tokens.
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        if self._fresh():
            assert self._token is not None
            return self._token
        async with self._lock:
            if not self._fresh():
                await self._refresh()
            assert self._token is not None
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` after a 401, unless another loop already replaced it."""
        if self._token == token:
            self._token = None

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at

    async def _refresh(self) -> None:
        cfg = self._config
        basic = aiohttp.encode_basic_auth(cfg.client_id, cfg.client_secret.reveal())
        try:
            async with self._session.post(
                cfg.token_url,
                data={"grant_type": "client_credentials"},
                headers={"Authorization": basic},
                timeout=aiohttp.ClientTimeout(total=30, sock_connect=cfg.connect_timeout_s),
            ) as resp:
                if resp.status != 200:
                    raise FetchError(f"token_http_{resp.status}", status=resp.status)
                body = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise FetchError(f"token_unavailable: {exc.__class__.__name__}") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise FetchError("token_malformed")
        try:
            ttl = float(body.get("expires_in", 300))
        except (TypeError, ValueError):
            ttl = 300.0
        # Refresh ahead of expiry, but never so early that a short-lived token is useless.
        margin = min(cfg.token_refresh_margin_s, ttl / 2)
        self._token = token
        self._expires_at = self._clock() + ttl - margin
        if self._on_refresh is not None:
            self._on_refresh()
