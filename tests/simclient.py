"""A small client for the CXone Media Playback and Genesys simulators, for their tests."""

from __future__ import annotations

import base64
import json
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from cxstream.sim.platform_servers import GenesysSim, PlaybackSim

CONTACTS_PATH = "/media-playback/v1/contacts"


def basic(login: str, password: str) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(login, password)}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def jwt_claims(token: str) -> Any:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def cxone_token(session: aiohttp.ClientSession, sim: PlaybackSim) -> str:
    form = {
        "grant_type": "password",
        "username": sim.access_key_id,
        "password": sim.access_key_secret,
    }
    async with session.post(
        sim.token_url, data=form, headers=basic(sim.client_id, sim.client_secret)
    ) as resp:
        assert resp.status == 200, await resp.text()
        token: str = (await resp.json())["access_token"]
        return token


async def lookup(
    session: aiohttp.ClientSession, sim: PlaybackSim, token: str, contact: str, **params: str
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    query = {"acd-call-id": contact, "media-type": "voice-only", "exclude-waveforms": "true"}
    async with session.get(
        sim.api_url + CONTACTS_PATH, params=query | params, headers=bearer(token)
    ) as resp:
        return resp.status, await resp.json(), resp.headers


def file_urls(body: Any) -> list[str]:
    return [item["data"]["fileToPlayUrl"] for item in body["interactions"]]


async def genesys_token(session: aiohttp.ClientSession, sim: GenesysSim) -> str:
    async with session.post(
        sim.token_url,
        data={"grant_type": "client_credentials"},
        headers=basic(sim.client_id, sim.client_secret),
    ) as resp:
        assert resp.status == 200, await resp.text()
        token: str = (await resp.json())["access_token"]
        return token


async def recordings(
    session: aiohttp.ClientSession,
    sim: GenesysSim,
    token: str,
    conversation: str,
    recording: str | None = None,
    **params: str,
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    url = f"{sim.api_url}/api/v2/conversations/{conversation}/recordings"
    if recording is not None:
        url += f"/{recording}"
    async with session.get(url, params=params, headers=bearer(token)) as resp:
        return resp.status, await resp.json(), resp.headers


async def download(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, CIMultiDictProxy[str]]:
    async with session.get(url, headers=headers) as resp:
        return resp.status, await resp.read(), resp.headers
