"""The platforms recordings come from, one module each, chosen by ``source.kind``."""

from __future__ import annotations

import aiohttp

from cxstream.config import Config
from cxstream.fetcher.cxone import CxoneClient
from cxstream.fetcher.source import Source
from cxstream.fetcher.sources.cxone_stream import CxoneStreamSource
from cxstream.fetcher.token import TokenSource


def make_source(config: Config, session: aiohttp.ClientSession) -> Source:
    kind = config.source.kind
    if kind == "cxone-stream":
        client = CxoneClient(session, config.cxone, TokenSource(session, config.cxone))
        return CxoneStreamSource(client, config.cxone.codecs)
    raise ValueError(f"source.kind {kind!r} is not built yet")
