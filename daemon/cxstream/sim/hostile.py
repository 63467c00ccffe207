"""The hostile answers: bodies that never end, bombs, and control bodies of many MiB.

Everything large is produced as it is sent, never held whole: a 64 MiB
metadata body or an endless stream costs the simulator one 64 KiB buffer, so
a test can measure the daemon's memory, not ours. A client that stops reading
and hangs up ends the handler (its next write fails, or the runner cancels it).
"""

from __future__ import annotations

import asyncio
import functools
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

CHUNK = 64 * 1024
_PAD = b" " * CHUNK

Counter = Callable[[int], None]


@functools.lru_cache(maxsize=4)
def gzip_bomb(inflated_bytes: int) -> bytes:
    """A gzip member that inflates to ``inflated_bytes`` zero bytes (about 1000:1)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip header and trailer
    zeros = bytes(min(inflated_bytes, 1024 * 1024))
    out = bytearray()
    left = inflated_bytes
    while left:
        n = min(left, len(zeros))
        out += packer.compress(zeros[:n])
        left -= n
    out += packer.flush()
    return bytes(out)


def cycled(body: bytes | memoryview, start: int, n: int) -> bytes:
    """``n`` bytes of ``body`` repeated, beginning at ``start``: more of "the same audio"."""
    if not body or n <= 0:
        return b""
    data = bytes(body)
    start %= len(data)
    reps = (start + n) // len(data) + 1
    return (data * reps)[start : start + n]


async def send_endless(
    resp: web.StreamResponse,
    body: memoryview,
    sent: int,
    max_bytes: int,
    count: Counter,
    shutdown: asyncio.Event,
) -> bool:
    """After ``sent`` bytes of ``body``, keep sending it over and over until ``max_bytes``
    in all (0: until the client leaves). False if the server began shutting down."""
    if not len(body):
        return True
    pos = sent % len(body)
    while not max_bytes or sent < max_bytes:
        if shutdown.is_set():
            return False
        n = CHUNK if not max_bytes else min(CHUNK, max_bytes - sent)
        piece = body[pos : pos + n]
        await resp.write(piece)
        count(len(piece))
        sent += len(piece)
        pos = (pos + len(piece)) % len(body)
        # A fast reader on loopback never makes write() wait: let others run.
        await asyncio.sleep(0)
    return True


async def padded_json(
    request: web.Request,
    payload: Mapping[str, Any],
    size_bytes: int,
    *,
    status: int = 200,
    content_length: bool = False,
    count: Counter | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """``payload`` as JSON padded with whitespace to ``size_bytes`` (still valid JSON),
    chunked or with an honest ``Content-Length``, written piece by piece."""
    head = orjson.dumps(dict(payload))
    pad = max(0, size_bytes - len(head))
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_type = "application/json"
    if content_length:
        resp.content_length = len(head) + pad
    else:
        resp.enable_chunked_encoding()
    tally = count or (lambda n: None)
    await resp.prepare(request)
    try:
        await resp.write(head[:-1])
        tally(len(head) - 1)
        while pad:
            n = min(pad, CHUNK)
            await resp.write(_PAD[:n])
            tally(n)
            pad -= n
            await asyncio.sleep(0)
        await resp.write(head[-1:])
        tally(1)
        await resp.write_eof()
    except ConnectionResetError:
        # The client read what it was willing to and hung up: that is the point.
        pass
    return resp
