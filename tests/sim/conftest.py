"""The simulator's own tests: a simulator with a small corpus and its own credentials.

This ``sim`` shadows tests/conftest.py's (the daemon's tests use the harness's
credentials); ``auth`` is a Bearer header it issued.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from cxstream.sim import SimServer
from tests.sim.client import ARCHIVE_SECRET, CLIENT_ID, CLIENT_SECRET, CORPUS, get_token


@pytest.fixture
async def sim() -> AsyncIterator[SimServer]:
    async with SimServer(
        CORPUS, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, archive_secret=ARCHIVE_SECRET
    ) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def auth(session: aiohttp.ClientSession, sim: SimServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {await get_token(session, sim)}"}
