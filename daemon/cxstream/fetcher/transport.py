"""The HTTP transport under the CXone client: one pooled session, keepalive on,
no content codings, and control bodies read only up to a bound."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp

from cxstream import __version__
from cxstream.fetcher.errors import FetchError

USER_AGENT = f"cxstream/{__version__}"


def _keepalive_socket(addr_info: Any) -> socket.socket:
    family, type_, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=type_, proto=proto)
    # Middleboxes drop idle flows silently; probes keep them (and tell us early
    # when the peer is gone) while a long stream sits between buffer fills.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    return sock


def make_session(*, pool_size: int, connect_timeout_s: float) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=pool_size, enable_cleanup_closed=True, socket_factory=_keepalive_socket
    )
    # No total timeout: a 30-minute recording is a 30-minute response. Stalls
    # are the idle watchdog's job, per read.
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s),
        # identity everywhere, and nothing inflated whatever the server sends:
        # a gzip bomb stays the few KiB it is on the wire, and a coded body is
        # refused by its Content-Encoding (sizes, ranges and digests would
        # otherwise describe other bytes).
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        auto_decompress=False,
        # A fast stream's body waits in aiohttp's buffer between our reads:
        # 256 KiB (pausing the socket at twice that) lets each read take more at
        # once. A slow stream never fills it, so it costs nothing there.
        read_bufsize=256 * 1024,
    )


def resume_from(start: int) -> dict[str, str]:
    """The request headers for a body from ``start`` (identity is the session's default)."""
    return {"Range": f"bytes={start}-"} if start else {}


def content_coding(resp: aiohttp.ClientResponse) -> str | None:
    """The response's content coding, None for identity (all we ever ask for)."""
    coding = resp.headers.get("Content-Encoding", "identity").strip().lower()
    return None if coding in ("", "identity") else coding[:32]


async def read_bounded(resp: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
    """The whole (identity) body, or FetchError(``<what>_too_large``) past ``limit`` bytes:
    a server answering megabytes where kilobytes are expected costs one attempt, not
    the process's memory."""
    coding = content_coding(resp)
    if coding is not None:
        raise FetchError("content_encoding_refused", f"{what}: {coding}", status=resp.status)
    length = resp.content_length
    if length is not None and length > limit:
        raise FetchError(f"{what}_too_large", f"{length} bytes, limit {limit}", status=resp.status)
    body = bytearray()
    while chunk := await resp.content.read(min(65536, limit + 1 - len(body))):
        body += chunk
        if len(body) > limit:
            raise FetchError(f"{what}_too_large", f"over {limit} bytes", status=resp.status)
    return bytes(body)
