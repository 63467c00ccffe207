"""The platforms recordings come from, one module each, chosen by ``source.kind``."""

from __future__ import annotations

import aiohttp

from cxstream.audit import AuditLog
from cxstream.config import Config
from cxstream.fetcher.cxone import CxoneClient
from cxstream.fetcher.ratelimit import RateLimiter
from cxstream.fetcher.source import Source
from cxstream.fetcher.sources.cxone_playback import CxonePlaybackSource
from cxstream.fetcher.sources.cxone_stream import CxoneStreamSource
from cxstream.fetcher.sources.genesys import GenesysSource
from cxstream.fetcher.token import TokenSource, client_credentials
from cxstream.metrics import Metrics


def make_source(
    config: Config, session: aiohttp.ClientSession, audit: AuditLog, metrics: Metrics
) -> Source:
    kind, cx = config.source.kind, config.cxone
    limiter = RateLimiter(
        cx.rate_limit_requests, cx.rate_limit_window_s, audit=audit, metrics=metrics
    )
    on_token = metrics.token_refreshes.inc
    if kind == "cxone-playback":
        return CxonePlaybackSource(session, cx, limiter, on_token=on_token)
    if kind == "genesys":
        assert config.genesys is not None
        return GenesysSource(
            session,
            config.genesys,
            cx,
            limiter,
            on_token=on_token,
            idle_timeout_s=config.streams.idle_timeout_s,
        )
    tokens = TokenSource(session, client_credentials(cx), cx.token_url, on_refresh=on_token)
    return CxoneStreamSource(CxoneClient(session, cx, tokens, limiter), cx.codecs)
