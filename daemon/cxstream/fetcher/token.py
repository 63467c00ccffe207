"""OAuth2 tokens, cached and refreshed before they expire.

One class for every grant the platforms use: CXone's stream API and Genesys
Cloud ask for ``client_credentials``; CXone's Media Playback API for the
``password`` grant with an access key. Client authentication is HTTP Basic
in every case. The token endpoint may be discovered (OpenID) the first time
it is needed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

from cxstream.config import CxoneConfig, Secret
from cxstream.fetcher.errors import FetchError

_TOKEN_BODY_LIMIT = 256 * 1024


@dataclass(frozen=True, slots=True)
class Grant:
    client_id: str
    client_secret: Secret
    form: dict[str, str] = field(default_factory=lambda: {"grant_type": "client_credentials"})
    connect_timeout_s: float = 10.0
    refresh_margin_s: float = 60.0


def client_credentials(config: CxoneConfig) -> Grant:
    return Grant(
        config.client_id,
        config.client_secret,
        connect_timeout_s=config.connect_timeout_s,
        refresh_margin_s=config.token_refresh_margin_s,
    )


class TokenSource:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        grant: Grant,
        token_url: str | Callable[[], Awaitable[str]],
        clock: Callable[[], float] = time.monotonic,
        on_refresh: Callable[[], None] | None = None,
    ) -> None:
        self._session = session
        self._grant = grant
        self._token_url = token_url
        self._clock = clock
        self._on_refresh = on_refresh
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

    async def _url(self) -> str:
        if isinstance(self._token_url, str):
            return self._token_url
        return await self._token_url()

    async def _refresh(self) -> None:
        grant = self._grant
        basic = aiohttp.encode_basic_auth(grant.client_id, grant.client_secret.reveal())
        url = await self._url()
        try:
            async with self._session.post(
                url,
                data=grant.form,
                headers={"Authorization": basic, "Accept": "application/json"},
                timeout=aiohttp.ClientTimeout(total=30, sock_connect=grant.connect_timeout_s),
            ) as resp:
                raw = await resp.content.read(_TOKEN_BODY_LIMIT + 1)
                if resp.status != 200:
                    raise FetchError(f"token_http_{resp.status}", status=resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FetchError("token_unavailable", exc.__class__.__name__) from None
        if len(raw) > _TOKEN_BODY_LIMIT:
            raise FetchError("token_too_large", f"over {_TOKEN_BODY_LIMIT} bytes")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise FetchError("token_malformed") from None
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise FetchError("token_malformed")
        try:
            ttl = float(body.get("expires_in", 300))
        except (TypeError, ValueError):
            ttl = 300.0
        # Refresh ahead of expiry, but never so early that a short-lived token is useless.
        margin = min(grant.refresh_margin_s, ttl / 2)
        self._token = token
        self._expires_at = self._clock() + ttl - margin
        if self._on_refresh is not None:
            self._on_refresh()
