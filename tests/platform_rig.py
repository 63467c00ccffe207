"""The fetch core in process against a platform simulator (CXone Media Playback, Genesys).

The same runner the daemon's workers get (``tests/inproc.py``), configured for
``source.kind = cxone-playback`` or ``genesys``; a webhook is parsed as the
ingress parses it, and ``drain`` runs the contact job and every job it fans
out, one after the other, until the queue is empty.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from cxstream.fetcher.job import JobInterrupted
from cxstream.ingress.event import parse_event
from cxstream.sim.platform_servers import GenesysSim, PlaybackSim
from tests.inproc import Rig, rig

FAST_PLATFORM = {"not_ready_grace_s": 30}


def _sim_view(sim: PlaybackSim | GenesysSim) -> SimpleNamespace:
    """What write_config reads of a simulator (the stream keys are unused here)."""
    return SimpleNamespace(
        base_url="http://127.0.0.1:9/unused",
        token_url="http://127.0.0.1:9/unused",
        archive_url=sim.archive_url,
        state=sim.state,
    )


@asynccontextmanager
async def playback_rig(
    tmp: Path, sim: PlaybackSim, *, discover: bool = True, **overrides: dict[str, Any]
) -> AsyncIterator[Rig]:
    cxone: dict[str, Any] = {
        "issuer": sim.issuer,
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "access_key_id": sim.access_key_id,
        "access_key_secret": sim.access_key_secret,
        "base_url": "" if discover else sim.api_url,
        "token_url": "",
    }
    cxone.update(overrides.pop("cxone", {}))
    sections = {"source": {"kind": "cxone-playback", **FAST_PLATFORM}, "cxone": cxone}
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    async with rig(tmp, _sim_view(sim), **sections) as r:  # type: ignore[arg-type]
        yield r


@asynccontextmanager
async def genesys_rig(
    tmp: Path, sim: GenesysSim, **overrides: dict[str, Any]
) -> AsyncIterator[Rig]:
    genesys: dict[str, Any] = {
        "api_url": sim.api_url,
        "login_url": sim.login_url,
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
    }
    genesys.update(overrides.pop("genesys", {}))
    sections = {"source": {"kind": "genesys", **FAST_PLATFORM}, "genesys": genesys}
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    async with rig(tmp, _sim_view(sim), **sections) as r:  # type: ignore[arg-type]
        yield r


async def submit_contact(r: Rig, contact_id: str, **data: Any) -> None:
    """Journal what a contact webhook asks for, parsed as the ingress parses it."""
    doc = orjson.loads(
        orjson.dumps(
            {
                "type": "recording.completed",
                "timestamp": "2026-11-24T10:00:00Z",
                "data": {"contactId": contact_id, **data},
            }
        )
    )
    request = parse_event(doc, None, datetime.now(UTC), r.cfg.source.kind)
    assert request is not None
    await r.journal.enqueue(request)


async def drain(r: Rig, limit: int = 50) -> list[str]:
    """Run queued jobs (fanned-out ones included) until none is left; their names."""
    ran: list[str] = []
    for _ in range(limit):
        job = await r.journal.claim()
        if job is None:
            return ran
        ran.append(job.recording_id)
        try:
            await r.runner.run(job)
        except JobInterrupted:
            raise AssertionError(f"{job.recording_id} interrupted") from None
    raise AssertionError(f"more than {limit} jobs: {ran}")
