"""The platforms recordings come from, one module each, chosen by ``source.kind``."""

from __future__ import annotations

import aiohttp

from cxstream.config import Config
from cxstream.fetcher.cxone import CxoneClient
from cxstream.fetcher.errors import PermanentError
from cxstream.fetcher.source import Media, Source, Target
from cxstream.fetcher.sources.cxone_stream import CxoneStreamSource
from cxstream.fetcher.token import TokenSource
from cxstream.journal import Job


def make_source(config: Config, session: aiohttp.ClientSession) -> Source:
    kind = config.source.kind
    if kind == "cxone-stream":
        client = CxoneClient(session, config.cxone, TokenSource(session, config.cxone))
        return CxoneStreamSource(client, config.cxone.codecs)
    return _NotBuilt(kind)


class _NotBuilt:
    """Until its adapter lands, a kind fails its jobs with a reason instead of guessing."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def resolve(self, job: Job) -> tuple[Target, ...]:
        raise PermanentError("source_not_built", self.kind)

    async def media(self, job: Job, target: Target, fmt: str) -> Media:
        raise PermanentError("source_not_built", self.kind)

    def forget(self, job: Job) -> None:
        pass
