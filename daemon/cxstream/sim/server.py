"""The simulator's application and the in-process server tests use.

``build_sim_app`` wires the CXone API (§1), the archive sink (§3) and the
``/_sim`` control routes onto one aiohttp application; ``SimServer`` runs it
on a real socket::

    async with SimServer(default_corpus()) as sim:
        ...  # point the daemon at sim.base_url / sim.token_url / sim.archive_url
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

from cxstream.sim.archive import (
    WEBHOOK_KEY,
    handle_archive,
    handle_archive_config,
    handle_archive_list,
    make_webhook,
)
from cxstream.sim.audio import CONTENT_TYPES
from cxstream.sim.auth import handle_token, require_token
from cxstream.sim.control import handle_add_recordings, handle_stats
from cxstream.sim.hostile import padded_json
from cxstream.sim.responses import ApiError, json_response, retryable
from cxstream.sim.spec import RecordingSpec, recording_from_dict
from cxstream.sim.state import STATE_KEY, Announcement, RecordingStats, SimState
from cxstream.sim.stream import handle_stream

DEFAULT_CLIENT_ID = "cxstream"
DEFAULT_CLIENT_SECRET = "sim-client-secret"
# base64 of "cxstream-sim-archive-secret"; a fixed default so a demo config can name it.
DEFAULT_ARCHIVE_SECRET = "whsec_Y3hzdHJlYW0tc2ltLWFyY2hpdmUtc2VjcmV0"
# Stalled and trickling handlers watch the shutdown event; anything still
# running after this is cancelled rather than holding up the exit.
SHUTDOWN_TIMEOUT_S = 2.0


def recording_metadata(
    state: SimState, spec: RecordingSpec, listed: int | None = None
) -> dict[str, Any]:
    """The JSON of contract §1.2 for ``spec`` (claiming ``listed`` segments when given)."""
    codecs: dict[str, Any] = {}
    for codec in spec.codecs:
        size, sha256 = state.audio.expected(spec, codec)
        codecs[codec] = {"contentType": CONTENT_TYPES[codec], "bytes": size, "sha256": sha256}
    seconds = spec.segment_seconds
    offsets = spec.offsets if listed is None else range(0, listed * seconds, seconds)
    return {
        "recordingId": spec.id,
        "durationSeconds": len(offsets) * seconds,
        "maxDuration": spec.max_duration,
        "maxSegmentsPerRequest": spec.max_segments,
        "segments": [{"offset": o, "duration": seconds} for o in offsets],
        "codecs": codecs,
    }


async def handle_metadata(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    spec = state.recordings.get(request.match_info["id"])
    if spec is None:
        try:
            require_token(request)
            raise ApiError(404, "recording_not_found")
        except ApiError as err:
            return err.response()
    stats = state.stats_for(spec.id)
    stats.metadata_requests += 1
    state.notify()
    active = [f for f in spec.faults if f.for_metadata and f.applies(stats.metadata_requests)]
    kinds = {f.kind: f for f in active}
    try:
        require_token(request)
        if "metadata_status" in kinds:
            raise retryable(kinds["metadata_status"].status, kinds["metadata_status"].retry_after)
    except ApiError as err:
        return err.response()
    many = kinds.get("many_segments")
    payload = recording_metadata(state, spec, many.count if many else None)

    def count(n: int) -> None:
        stats.metadata_bytes_served += n
        state.notify()

    huge = kinds.get("huge_metadata")
    if huge is not None:
        return await padded_json(
            request, payload, huge.size_bytes, content_length=huge.content_length, count=count
        )
    response = json_response(payload)
    count(response.content_length or 0)
    return response


def build_sim_app(
    corpus: Iterable[RecordingSpec] = (),
    *,
    client_id: str = DEFAULT_CLIENT_ID,
    client_secret: str = DEFAULT_CLIENT_SECRET,
    archive_secret: str = DEFAULT_ARCHIVE_SECRET,
    token_ttl: float = 3600.0,
    archive_fail_first: int = 0,
) -> web.Application:
    """The simulator as an aiohttp application (ValueError for an unusable secret)."""
    if not 0 < token_ttl < math.inf:
        raise ValueError(f"token_ttl must be a positive number of seconds, got {token_ttl}")
    app = web.Application()
    app[WEBHOOK_KEY] = make_webhook(archive_secret)
    state = SimState(
        corpus,
        client_id=client_id,
        client_secret=client_secret,
        archive_secret=archive_secret,
        token_ttl=token_ttl,
    )
    state.archive_fail_remaining = archive_fail_first
    app[STATE_KEY] = state

    async def on_shutdown(_app: web.Application) -> None:
        state.shutdown.set()

    app.on_shutdown.append(on_shutdown)
    app.router.add_post("/auth/token", handle_token)
    app.router.add_get("/api/v2/recordings/{id}", handle_metadata, allow_head=False)
    app.router.add_get("/api/v2/recordings/{id}/stream", handle_stream, allow_head=False)
    app.router.add_post("/archive", handle_archive)
    app.router.add_get("/_sim/stats", handle_stats)
    app.router.add_post("/_sim/recordings", handle_add_recordings)
    app.router.add_get("/_sim/archive", handle_archive_list)
    app.router.add_post("/_sim/archive/config", handle_archive_config)
    return app


class SimServer:
    """The simulator on a loopback socket, for tests and ``cxstream sim``."""

    def __init__(
        self,
        corpus: Iterable[RecordingSpec] = (),
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        archive_secret: str = DEFAULT_ARCHIVE_SECRET,
        token_ttl: float = 3600.0,
        archive_fail_first: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app = build_sim_app(
            corpus,
            client_id=client_id,
            client_secret=client_secret,
            archive_secret=archive_secret,
            token_ttl=token_ttl,
            archive_fail_first=archive_fail_first,
        )
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._base_url = ""

    async def start(self) -> None:
        # handler_cancellation: a client that hangs up on a stalled response
        # cancels its handler at once instead of leaving it parked.
        runner = web.AppRunner(
            self.app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        host = f"[{host}]" if ":" in host else host
        self._base_url = f"http://{host}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> SimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """``cxone.base_url`` (no trailing slash); empty until started."""
        return self._base_url

    @property
    def token_url(self) -> str:
        return f"{self._base_url}/auth/token"

    @property
    def archive_url(self) -> str:
        return f"{self._base_url}/archive"

    @property
    def state(self) -> SimState:
        """Everything the simulator remembers: recordings, counters, tokens, announcements."""
        return self.app[STATE_KEY]

    def served(self, recording_id: str) -> RecordingStats:
        """What the API served for one recording: its requests, bytes, open streams."""
        return self.state.stats_for(recording_id)

    @property
    def announcements(self) -> list[Announcement]:
        return self.state.announcements

    def add_recording(self, spec: RecordingSpec | Mapping[str, Any]) -> RecordingSpec:
        """Add or replace a recording (a spec or its TOML/JSON-shaped mapping)."""
        if not isinstance(spec, RecordingSpec):
            spec = recording_from_dict(spec)
        self.state.add_recording(spec)
        return spec

    def expected(self, recording_id: str, codec: str) -> tuple[int, str]:
        """``(bytes, sha256 hex)`` of the whole recording, as the metadata reports it."""
        spec = self.state.recordings[recording_id]
        if codec not in spec.codecs:
            raise ValueError(f"{recording_id} is not available as {codec}")
        return self.state.audio.expected(spec, codec)

    def body(self, recording_id: str, codec: str, offsets: Sequence[int] | None = None) -> bytes:
        """The true (fault-free) 200 body for these offsets; all segments by default."""
        spec = self.state.recordings[recording_id]
        if offsets is None:
            offsets = spec.offsets
        bad = [o for o in offsets if o not in spec.offsets]
        if bad:
            raise ValueError(f"{recording_id}: {bad[0]} is not a segment offset")
        indices = [o // spec.segment_seconds for o in offsets]
        return self.state.audio.body(spec, codec, indices)

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        """Block until ``predicate()`` holds (re-checked on every state change)."""
        await self.state.wait_for(predicate, timeout_s)
