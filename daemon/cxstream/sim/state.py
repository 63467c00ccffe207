"""Everything the simulator remembers: recordings, tokens, counters, announcements.

Tests read this object directly (``SimServer.state``) and block on it with
:meth:`SimState.wait_for`, which wakes on every change instead of polling.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from cxstream.sim.audio import AudioLibrary
from cxstream.sim.spec import FaultSpec, RecordingSpec


@dataclass
class RequestLog:
    """One stream request as the server saw it.

    ``offsets`` is the parsed list when the parameter was well-formed, else the
    raw string (or None when absent), so rejected requests are still visible.
    """

    offsets: list[int] | str | None
    codec: str | None
    range: str | None
    status: int = 0
    faults: list[str] = field(default_factory=list)
    bytes: int = 0


@dataclass
class RecordingStats:
    stream_requests: int = 0
    metadata_requests: int = 0
    # Stream response bodies as sent (audio, or what a hostile fault sends instead).
    bytes_served: int = 0
    metadata_bytes_served: int = 0
    # Audio responses still being sent (or held open by a stall) right now.
    active_streams: int = 0
    requests: list[RequestLog] = field(default_factory=list)


@dataclass
class Announcement:
    """A validly signed archive callback, whatever the sink answered (``status``)."""

    webhook_id: str
    payload: Any
    received_at: float
    status: int


class SimState:
    def __init__(
        self,
        corpus: Iterable[RecordingSpec],
        *,
        client_id: str,
        client_secret: str,
        archive_secret: str,
        token_ttl: float,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.archive_secret = archive_secret
        self.token_ttl = token_ttl
        self.audio = AudioLibrary()
        self.recordings: dict[str, RecordingSpec] = {}
        self.recording_stats: dict[str, RecordingStats] = {}
        self.tokens: dict[str, float] = {}
        self.tokens_issued = 0
        self.token_requests = 0
        self.token_bytes_served = 0
        # Armed by a huge_token fault: the next token request gets a huge body.
        self.huge_token: FaultSpec | None = None
        # Every token ever issued, expired or not: what a trail must never show.
        self.issued_tokens: list[str] = []
        self.announcements: list[Announcement] = []
        self.archive_fail_remaining = 0
        # Set when the server shuts down, so stalled and trickling handlers end
        # promptly instead of holding up the runner's cleanup.
        self.shutdown = asyncio.Event()
        self._changed = asyncio.Event()
        for spec in corpus:
            self.add_recording(spec)

    # -- recordings -------------------------------------------------------

    def add_recording(self, spec: RecordingSpec) -> None:
        """Add or replace a recording; a replacement starts its counters (and faults) afresh."""
        self.recordings[spec.id] = spec
        self.recording_stats[spec.id] = RecordingStats()
        self.notify()

    def stats_for(self, recording_id: str) -> RecordingStats:
        return self.recording_stats[recording_id]

    # -- tokens -----------------------------------------------------------

    def issue_token(self) -> str:
        token = secrets.token_urlsafe(32)
        self.tokens[token] = time.monotonic() + self.token_ttl
        self.tokens_issued += 1
        self.issued_tokens.append(token)
        self.notify()
        return token

    def token_valid(self, token: str | None) -> bool:
        if token is None:
            return False
        expiry = self.tokens.get(token)
        if expiry is None:
            return False
        if time.monotonic() >= expiry:
            del self.tokens[token]
            return False
        return True

    def revoke(self, token: str | None) -> None:
        if token is not None:
            self.tokens.pop(token, None)

    def expire_tokens(self) -> None:
        """Make every issued token invalid now (a test's "the token just expired")."""
        self.tokens.clear()

    # -- change notification ------------------------------------------------

    def notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Return once ``predicate()`` holds; ``TimeoutError`` after ``timeout_s`` seconds."""
        async with asyncio.timeout(timeout_s):
            while True:
                changed = self._changed
                if predicate():
                    return
                await changed.wait()

    # -- observation --------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The JSON of ``GET /_sim/stats``."""
        return {
            "recordings": {rid: asdict(st) for rid, st in self.recording_stats.items()},
            "tokens_issued": self.tokens_issued,
            "token_requests": self.token_requests,
            "token_bytes_served": self.token_bytes_served,
        }

    def announcements_json(self) -> list[dict[str, Any]]:
        return [asdict(a) for a in self.announcements]


STATE_KEY = web.AppKey("cxstream_sim_state", SimState)
