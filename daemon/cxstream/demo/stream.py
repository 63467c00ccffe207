"""The ``cxone-stream`` demo: twelve recordings of the stream API (contract §1), several
with faults the daemon rides out, each webhook signed per Standard Webhooks."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
from standardwebhooks.webhooks import Webhook

from cxstream.demo.show import Board, Row
from cxstream.formats import registry
from cxstream.sim.corpus import default_corpus
from cxstream.sim.server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SimServer
from cxstream.sim.spec import RecordingSpec
from cxstream.sim.state import Announcement

_WEBHOOK_SECRET = "whsec_ZGVtby13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5"


class StreamScenario:
    platform = "cxone-stream"

    def __init__(self, sim: SimServer, corpus: list[RecordingSpec]) -> None:
        self.sim = sim
        self.corpus = corpus
        self.jobs = [spec.id for spec in corpus]
        self.expected = list(self.jobs)
        self.title = f"cxstream demo: cxone-stream, {len(corpus)} recordings"

    @property
    def archive_url(self) -> str:
        return self.sim.archive_url

    @property
    def announcements(self) -> list[Announcement]:
        return self.sim.announcements

    def config(self) -> str:
        sim = self.sim
        return f"""
[webhook]
listen = "127.0.0.1:0"
secret = "{_WEBHOOK_SECRET}"
[cxone]
base_url = "{sim.base_url}"
token_url = "{sim.token_url}"
client_id = "{DEFAULT_CLIENT_ID}"
client_secret = "{DEFAULT_CLIENT_SECRET}"
codecs = ["opus", "pcm"]
"""

    async def send(self, http: aiohttp.ClientSession, url: str, board: Board) -> None:
        signer = Webhook(_WEBHOOK_SECRET)
        for spec in self.corpus:
            event = {
                "type": "recording.completed",
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "data": {"recordingId": spec.id, "contactId": f"c-{spec.id[-2:]}"},
            }
            body = orjson.dumps(event)
            wid = f"msg_demo_{spec.id}"
            now = datetime.now(UTC)
            headers = {
                "Content-Type": "application/json",
                "webhook-id": wid,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signer.sign(wid, now, body.decode()),
            }
            async with http.post(url, data=body, headers=headers) as resp:
                row = board.get(spec.id)
                if resp.status != 202 and row is not None:
                    row.state, row.note = "REJECTED", str(resp.status)

    def served(self, row: Row) -> int | None:
        return self.sim.served(row.name).bytes_served

    def check_bytes(self, row: Row, data: bytes) -> str | None:
        suffix = Path(row.path).suffix.lstrip(".")
        fmt = next(f for f in (registry.OPUS, registry.PCM) if f.extension == suffix)
        size, sha = self.sim.expected(row.name, fmt.name)
        # PCM is archived inside a RIFF/WAVE header of our own.
        source = data[fmt.header_bytes :]
        if len(source) != size or hashlib.sha256(source).hexdigest() != sha:
            return "bytes differ from the source"
        return None


@asynccontextmanager
async def scenario() -> AsyncIterator[StreamScenario]:
    corpus = default_corpus()
    async with SimServer(corpus) as sim:
        yield StreamScenario(sim, corpus)
