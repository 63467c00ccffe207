"""``GET /api/v2/recordings/{id}/stream``: validation, faults and chunked delivery."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from aiohttp.http import StreamWriter

from cxstream.sim.audio import CONTENT_TYPES
from cxstream.sim.auth import invalid_token, require_token
from cxstream.sim.faults import Plan, make_plan
from cxstream.sim.responses import ApiError, json_response, retryable
from cxstream.sim.spec import RecordingSpec
from cxstream.sim.state import STATE_KEY, RecordingStats, RequestLog, SimState
from cxstream.sim.validate import parse_offsets, parse_range, validate_stream_query

CHUNK = 16 * 1024
# How often a stalled handler looks for its client having gone away, for
# runners without handler cancellation (ours cancels it outright).
HOLD_POLL_S = 0.25
TRICKLE_TICKS_PER_S = 10

Counter = Callable[[int], None]


async def handle_stream(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    spec = state.recordings.get(request.match_info["id"])
    if spec is None:
        try:
            require_token(request)
            raise ApiError(404, "recording_not_found")
        except ApiError as err:
            return err.response()
    stats = state.stats_for(spec.id)
    stats.stream_requests += 1
    log = RequestLog(
        offsets=parse_offsets(request.query.get("offsets")) or request.query.get("offsets"),
        codec=request.query.get("codec"),
        range=request.headers.get("Range"),
    )
    stats.requests.append(log)
    state.notify()
    try:
        return await _serve(request, state, spec, stats, log)
    except ApiError as err:
        log.status = err.status
        state.notify()
        return err.response()


async def _serve(
    request: web.Request,
    state: SimState,
    spec: RecordingSpec,
    stats: RecordingStats,
    log: RequestLog,
) -> web.StreamResponse:
    token = require_token(request)
    number = stats.stream_requests
    active = [f for f in spec.faults if not f.for_metadata and f.applies(number)]
    log.faults = [f.kind for f in active]
    kinds = {f.kind: f for f in active}
    if "expire_token" in kinds:
        state.revoke(token)
        raise invalid_token()
    if "status" in kinds:
        raise retryable(kinds["status"].status, kinds["status"].retry_after)
    query = validate_stream_query(spec, request.query)
    if "codec_unavailable" in kinds:
        others = [c for c in spec.codecs if c != query.codec]
        raise ApiError(406, "codec_unavailable", available=others)
    if "json200" in kinds:
        log.status = 200
        return json_response({"error": "storage_timeout"}, 200)

    true_body, digest = state.audio.served(spec, query.codec, query.indices)
    plan = make_plan(true_body, query.codec, active, digest)
    total = len(plan.body)
    start = None if plan.ignore_range else parse_range(request.headers.get("Range"))
    if start is not None and start >= total:
        raise ApiError(416, "range_not_satisfiable", headers={"Content-Range": f"bytes */{total}"})
    resp = web.StreamResponse(status=200 if start is None else 206)
    resp.headers["Content-Type"] = CONTENT_TYPES[query.codec]
    resp.headers["Accept-Ranges"] = "bytes"
    resp.headers["Repr-Digest"] = plan.digest
    if start is not None:
        resp.headers["Content-Range"] = f"bytes {start}-{total - 1}/{total}"
    resp.enable_chunked_encoding()
    log.status = resp.status

    def count(n: int) -> None:
        stats.bytes_served += n
        log.bytes += n
        state.notify()

    stats.active_streams += 1
    state.notify()
    try:
        await resp.prepare(request)
        body = memoryview(plan.body)[start or 0 :]
        await _deliver(request, resp, body, plan, count, state.shutdown)
    finally:
        # Also reached when a client hanging up cancels the handler, so tests
        # can wait for a stalled stream to be abandoned.
        stats.active_streams -= 1
        state.notify()
    return resp


async def _deliver(
    request: web.Request,
    resp: web.StreamResponse,
    data: memoryview,
    plan: Plan,
    count: Counter,
    shutdown: asyncio.Event,
) -> None:
    piece = CHUNK
    if plan.bytes_per_second is not None:
        piece = max(1, min(CHUNK, plan.bytes_per_second // TRICKLE_TICKS_PER_S))
    if plan.truncate_after is not None:
        cut = min(plan.truncate_after, len(data))
        whole = cut - cut % piece
        await _send(resp, data[:whole], piece, plan.bytes_per_second, count, shutdown)
        await _cut_mid_chunk(request, resp, data[whole : whole + piece], cut - whole, count)
        return
    stop = len(data) if plan.stall_after is None else min(plan.stall_after, len(data))
    finished = await _send(resp, data[:stop], piece, plan.bytes_per_second, count, shutdown)
    if plan.stall_after is not None and finished:
        await _hold(request, shutdown)
        finished = False
    if not finished:
        # Ending the handler normally would send the terminating chunk and make a
        # short body look complete; closing keeps the framing visibly broken.
        _close(request)


async def _send(
    resp: web.StreamResponse,
    data: memoryview,
    piece: int,
    bytes_per_second: int | None,
    count: Counter,
    shutdown: asyncio.Event,
) -> bool:
    """Write ``data`` in chunks of ``piece``; False if shutdown interrupted a trickle."""
    for pos in range(0, len(data), piece):
        part = data[pos : pos + piece]
        await resp.write(part)
        count(len(part))
        if bytes_per_second is not None and await _pause(shutdown, len(part) / bytes_per_second):
            return False
    return True


async def _cut_mid_chunk(
    request: web.Request, resp: web.StreamResponse, chunk: memoryview, keep: int, count: Counter
) -> None:
    """Announce ``chunk`` in full, send only ``keep`` bytes of it, then hang up."""
    writer = await resp.prepare(request)
    if isinstance(writer, StreamWriter):
        # Headers are buffered until the first body write; a cut before any
        # whole chunk must still deliver them.
        writer.send_headers()
    transport = request.transport
    if transport is None:
        return
    if len(chunk):
        transport.write(f"{len(chunk):x}\r\n".encode() + bytes(chunk[:keep]))
        count(keep)
    # close() rather than abort(): it flushes what is buffered first, so the
    # client deterministically receives exactly ``after_bytes`` body bytes.
    transport.close()


async def _pause(shutdown: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if the server started shutting down meanwhile."""
    try:
        await asyncio.wait_for(shutdown.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def _hold(request: web.Request, shutdown: asyncio.Event) -> None:
    """Keep the connection open, sending nothing, until the client or the server gives up."""
    while not shutdown.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await _pause(shutdown, HOLD_POLL_S)


def _close(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()
