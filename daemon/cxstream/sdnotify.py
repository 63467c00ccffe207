"""The sd_notify protocol (sd_notify(3)): newline-separated ``KEY=VALUE`` datagrams to
``$NOTIFY_SOCKET``.

Written here because the protocol is one ``sendto`` per message, while the
PyPI options are unmaintained (``sdnotify``, last release 2017) or need
libsystemd to build (``systemd-python``, ``cysystemd``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping


class SdNotify:
    """Speaks to systemd when started as ``Type=notify``; a no-op otherwise."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        raw = env.get("NOTIFY_SOCKET", "")
        # "@name" is Linux's abstract namespace: the leading NUL is the real name.
        self._address = "\0" + raw[1:] if raw.startswith("@") else raw
        self._sock: socket.socket | None = None
        if raw.startswith(("/", "@")):
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never block the event loop on systemd: a full queue drops a ping instead.
            self._sock.setblocking(False)
        self.watchdog_s = _watchdog_interval(env)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` as one datagram; False when there is no one to tell."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError:
            return False
        return True

    async def watchdog(self) -> None:
        """Ping from the event loop itself: a loop that blocks stops the pings, and
        systemd restarts the service after ``WatchdogSec``."""
        if self.watchdog_s is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.watchdog_s)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``WATCHDOG_USEC`` (systemd's advice), if the watchdog is meant for us."""
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


def monotonic_usec() -> int:
    """``MONOTONIC_USEC=`` for ``RELOADING=1``: CLOCK_MONOTONIC, as systemd reads it."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
