"""The ``cxone-playback`` and ``genesys`` demos: contact webhooks, as the platforms send them.

Neither platform can sign a body (platforms.md), so each calls with a static
credential: a CXone Studio script with ``Authorization: Bearer``, a Genesys
Web Services Data Action with Basic auth. Each webhook names only the
contact (``contactId``); the daemon looks its recordings up and fans out
one job per recording. Every file is then compared with the bytes the
simulator serves for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import orjson

from cxstream.demo.show import Board, Row
from cxstream.sim.corpus import default_genesys, default_playback
from cxstream.sim.platform_servers import GenesysSim, PlaybackSim
from cxstream.sim.platform_spec import GenesysConversation, PlaybackContact
from cxstream.sim.state import Announcement

_BEARER = "demo-studio-bearer-token-0123456789"
_BASIC_USER, _BASIC_PASSWORD = "genesys-data-action", "demo-basic-password-0123456789"
# The simulators' "not available yet" lasts seconds; a real tenant's can last minutes.
_NOT_READY_GRACE_S = 30
_GENESYS_FORMAT = {".opus": "OGG_OPUS", ".wav": "WAV"}
_PREFERRED = ("OGG_OPUS", "WAV")


async def _post_contacts(
    http: aiohttp.ClientSession,
    url: str,
    board: Board,
    contacts: list[str],
    auth: dict[str, str] | aiohttp.BasicAuth,
) -> None:
    for contact in contacts:
        body = orjson.dumps({"type": "recording.completed", "data": {"contactId": contact}})
        headers = {"Content-Type": "application/json"}
        basic = auth if isinstance(auth, aiohttp.BasicAuth) else None
        if isinstance(auth, dict):
            headers.update(auth)
        async with http.post(url, data=body, headers=headers, auth=basic) as resp:
            row = board.get(contact)
            if resp.status != 202 and row is not None:
                row.state, row.note = "REJECTED", str(resp.status)


class PlaybackScenario:
    platform = "cxone-playback"

    def __init__(self, sim: PlaybackSim, contacts: list[PlaybackContact]) -> None:
        self.sim = sim
        self.jobs = [c.id for c in contacts]
        # A contact with several voice files: <id>, <id>-2, … (contract §8).
        self._files = {
            (c.id if i == 1 else f"{c.id}-{i}"): (c.id, i)
            for c in contacts
            for i in range(1, len(c.files) + 1)
        }
        self.expected = list(self._files)
        self.title = (
            f"cxstream demo: cxone-playback, {len(contacts)} contacts, "
            f"{len(self.expected)} recordings"
        )

    @property
    def archive_url(self) -> str:
        return self.sim.archive_url

    @property
    def announcements(self) -> list[Announcement]:
        return self.sim.announcements

    def config(self) -> str:
        sim = self.sim
        # No base_url or token_url: both are discovered from the issuer, as on a tenant.
        return f"""
[source]
kind = "cxone-playback"
not_ready_grace_s = {_NOT_READY_GRACE_S}
[webhook]
listen = "127.0.0.1:0"
auth = "bearer"
token = "{_BEARER}"
[cxone]
issuer = "{sim.issuer}"
client_id = "{sim.client_id}"
client_secret = "{sim.client_secret}"
access_key_id = "{sim.access_key_id}"
access_key_secret = "{sim.access_key_secret}"
"""

    async def send(self, http: aiohttp.ClientSession, url: str, board: Board) -> None:
        # What a Studio script's SNIPPET sends: proxy.AddHeader("Authorization", "Bearer …").
        auth = {"Authorization": f"Bearer {_BEARER}"}
        await _post_contacts(http, url, board, self.jobs, auth)

    def served(self, row: Row) -> int | None:
        where = self._files.get(row.name)
        stats = self.sim.media.stats.get(f"{where[0]}.{where[1]}") if where else None
        return None if stats is None else stats.bytes_served

    def check_bytes(self, row: Row, data: bytes) -> str | None:
        if row.name not in self._files:
            return "the platform has no such recording"
        contact, index = self._files[row.name]
        if Path(row.path).suffix != ".mp4":
            return f"archived as {Path(row.path).suffix}, served as .mp4"
        if data != self.sim.body(contact, index):
            return "bytes differ from the source"
        return None


class GenesysScenario:
    platform = "genesys"

    def __init__(self, sim: GenesysSim, conversations: list[GenesysConversation]) -> None:
        self.sim = sim
        self.jobs = [c.id for c in conversations]
        self._formats = {r.id: r.formats for c in conversations for r in c.recordings}
        self.expected = list(self._formats)
        self.title = (
            f"cxstream demo: genesys, {len(conversations)} conversations, "
            f"{len(self.expected)} recordings"
        )

    @property
    def archive_url(self) -> str:
        return self.sim.archive_url

    @property
    def announcements(self) -> list[Announcement]:
        return self.sim.announcements

    def config(self) -> str:
        sim = self.sim
        return f"""
[source]
kind = "genesys"
not_ready_grace_s = {_NOT_READY_GRACE_S}
[webhook]
listen = "127.0.0.1:0"
auth = "basic"
user = "{_BASIC_USER}"
password = "{_BASIC_PASSWORD}"
[genesys]
api_url = "{sim.api_url}"
login_url = "{sim.login_url}"
client_id = "{sim.client_id}"
client_secret = "{sim.client_secret}"
formats = ["OGG_OPUS", "WAV"]
"""

    async def send(self, http: aiohttp.ClientSession, url: str, board: Board) -> None:
        # What a Web Services Data Action with Basic auth sends, per ended conversation.
        auth = aiohttp.BasicAuth(_BASIC_USER, _BASIC_PASSWORD)
        await _post_contacts(http, url, board, self.jobs, auth)

    def _format(self, row: Row) -> str | None:
        return _GENESYS_FORMAT.get(Path(row.path).suffix) if row.path else None

    def served(self, row: Row) -> int | None:
        fmt = {"opus": "OGG_OPUS", "wav": "WAV"}.get(row.codec)
        stats = self.sim.media.stats.get(f"{row.name}.{fmt}") if fmt else None
        return None if stats is None else stats.bytes_served

    def check_bytes(self, row: Row, data: bytes) -> str | None:
        if row.name not in self._formats:
            return "the platform has no such recording"
        fmt = self._format(row)
        # The first format of the preference order that the recording has.
        wanted = next(f for f in _PREFERRED if f in self._formats[row.name])
        if fmt != wanted:
            return f"archived as {fmt}, expected {wanted}"
        if data != self.sim.body(row.name, fmt):
            return "bytes differ from the source"
        return None


@asynccontextmanager
async def playback() -> AsyncIterator[PlaybackScenario]:
    settings, contacts = default_playback()
    async with PlaybackSim(contacts, settings=settings) as sim:
        yield PlaybackScenario(sim, contacts)


@asynccontextmanager
async def genesys() -> AsyncIterator[GenesysScenario]:
    settings, conversations = default_genesys()
    async with GenesysSim(conversations, settings=settings) as sim:
        yield GenesysScenario(sim, conversations)
