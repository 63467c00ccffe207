"""Sending a response body the way a misbehaving server does: whole, stalled,
cut mid-body or trickled. Shared by the stream API and the media host.

A response is either chunked or carries a ``Content-Length``; a cut keeps
the damage visible in both: a chunk announced in full but sent in part, or
fewer bytes than the length promised, then the connection closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web
from aiohttp.http import StreamWriter

from cxstream.sim.faults import Plan

CHUNK = 16 * 1024
# How often a stalled handler looks for its client having gone away, for
# runners without handler cancellation (ours cancels it outright).
HOLD_POLL_S = 0.25
TRICKLE_TICKS_PER_S = 10

Counter = Callable[[int], None]


async def deliver(
    request: web.Request,
    resp: web.StreamResponse,
    data: memoryview,
    plan: Plan,
    count: Counter,
    shutdown: asyncio.Event,
) -> None:
    """Send ``data`` (already prepared ``resp``) with the plan's stall, cut or trickle."""
    piece = CHUNK
    if plan.bytes_per_second is not None:
        piece = max(1, min(CHUNK, plan.bytes_per_second // TRICKLE_TICKS_PER_S))
    if plan.truncate_after is not None:
        cut = min(plan.truncate_after, len(data))
        whole = cut - cut % piece
        await send(resp, data[:whole], piece, plan.bytes_per_second, count, shutdown)
        await cut_mid_body(request, resp, data[whole : whole + piece], cut - whole, count)
        return
    stop = len(data) if plan.stall_after is None else min(plan.stall_after, len(data))
    finished = await send(resp, data[:stop], piece, plan.bytes_per_second, count, shutdown)
    if plan.stall_after is not None and finished:
        await hold(request, shutdown)
        finished = False
    if not finished:
        # Ending the handler normally would send the terminating chunk and make a
        # short body look complete; closing keeps the framing visibly broken.
        close(request)


async def send(
    resp: web.StreamResponse,
    data: memoryview,
    piece: int,
    bytes_per_second: int | None,
    count: Counter,
    shutdown: asyncio.Event,
) -> bool:
    """Write ``data`` in pieces of ``piece``; False if shutdown interrupted a trickle."""
    for pos in range(0, len(data), piece):
        part = data[pos : pos + piece]
        await resp.write(part)
        count(len(part))
        if bytes_per_second is not None and await pause(shutdown, len(part) / bytes_per_second):
            return False
    return True


async def cut_mid_body(
    request: web.Request, resp: web.StreamResponse, chunk: memoryview, keep: int, count: Counter
) -> None:
    """Send ``keep`` bytes of ``chunk`` (announced whole when chunked), then hang up."""
    writer = await resp.prepare(request)
    if isinstance(writer, StreamWriter):
        # Headers are buffered until the first body write; a cut before any
        # body byte must still deliver them.
        writer.send_headers()
    transport = request.transport
    if transport is None:
        return
    if len(chunk):
        framing = f"{len(chunk):x}\r\n".encode() if resp.chunked else b""
        transport.write(framing + bytes(chunk[:keep]))
        count(keep)
    # close() rather than abort(): it flushes what is buffered first, so the
    # client deterministically receives exactly ``after_bytes`` body bytes.
    transport.close()


async def pause(shutdown: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True if the server started shutting down meanwhile."""
    try:
        await asyncio.wait_for(shutdown.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def hold(request: web.Request, shutdown: asyncio.Event) -> None:
    """Keep the connection open, sending nothing, until the client or the server gives up."""
    while not shutdown.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await pause(shutdown, HOLD_POLL_S)


def close(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()
