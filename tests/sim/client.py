"""Talking to the simulator as a client would: credentials, URLs, checks of what it serves."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime

import aiohttp
from standardwebhooks.webhooks import Webhook

from cxstream.formats import ogg
from cxstream.sim import RecordingSpec, SimServer

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
ARCHIVE_SECRET = "whsec_" + base64.b64encode(b"archive-secret-for-tests").decode()
DIGEST_RE = re.compile(r"sha-256=:([A-Za-z0-9+/]+=*):")
CONTENT_TYPES = {"opus": "audio/ogg; codecs=opus", "pcm": "audio/L16; rate=8000; channels=1"}

CORPUS = [
    RecordingSpec("rec-a", segments=5),
    RecordingSpec("rec-opus", segments=4, codecs=("opus",)),
    RecordingSpec("rec-seven", segments=7, max_segments=3),
]


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(client_id, secret)}


async def get_token(session: aiohttp.ClientSession, sim: SimServer) -> str:
    async with session.post(
        sim.token_url,
        data={"grant_type": "client_credentials"},
        headers=basic(CLIENT_ID, CLIENT_SECRET),
    ) as resp:
        assert resp.status == 200
        return str((await resp.json())["access_token"])


def stream_url(sim: SimServer, rid: str) -> str:
    return f"{sim.base_url}/api/v2/recordings/{rid}/stream"


def query(offsets: str, codec: str = "opus", max_duration: str = "180") -> dict[str, str]:
    return {"offsets": offsets, "codec": codec, "maxDuration": max_duration}


async def fetch(
    session: aiohttp.ClientSession,
    sim: SimServer,
    rid: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
) -> tuple[aiohttp.ClientResponse, bytes]:
    async with session.get(stream_url(sim, rid), params=params, headers=headers) as resp:
        return resp, await resp.read()


def digest_of(body: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def chain_serials(data: bytes) -> list[int]:
    """Check every page CRC and link framing of a chained Ogg file; the links' serials."""
    serials: list[int] = []
    open_serial: int | None = None
    for page, raw in ogg.iter_pages(data):
        assert ogg.page_crc(raw) == page.crc
        if page.bos:
            assert open_serial is None, "a link began before the previous one ended"
            open_serial = page.serial
            serials.append(page.serial)
        assert page.serial == open_serial
        if page.eos:
            open_serial = None
    assert open_serial is None, "the last link has no EOS page"
    return serials


def sign(secret: str, body: bytes, msg_id: str | None = None) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    now = datetime.now(tz=UTC)
    signature = Webhook(secret).sign(msg_id, now, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


async def get_token_default(session: aiohttp.ClientSession, sim: SimServer) -> dict[str, str]:
    """A Bearer header from a simulator running with its default credentials."""
    async with session.post(
        sim.token_url,
        data={"grant_type": "client_credentials"},
        headers=basic(sim.state.client_id, sim.state.client_secret),
    ) as resp:
        return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
