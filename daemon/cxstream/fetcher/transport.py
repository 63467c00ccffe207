"""The HTTP transport under the CXone client: one pooled session, keepalive on."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp

from cxstream import __version__

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
        headers={"User-Agent": USER_AGENT},
    )
