"""Free space as a gate: a full disk pauses the work, it never fails a recording.

Workers ask ``ready()`` before they take a job. Below ``storage.min_free_bytes``
in ``storage.dir`` or ``storage.state_dir`` (or after a write hit ENOSPC), the
gate closes: jobs stay queued, ``/readyz`` says so, one audit line says why,
and the gate reopens by itself once space is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from cxstream.audit import AuditLog
from cxstream.metrics import Metrics

_RECHECK_S = 1.0
_REGAIN = 1024 * 1024


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class DiskGuard:
    def __init__(
        self,
        paths: tuple[Path, ...],
        min_free_bytes: int,
        audit: AuditLog,
        metrics: Metrics,
        *,
        probe: Callable[[Path], int] = free_bytes,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._paths = paths
        self._min = min_free_bytes
        self._audit = audit
        self._metrics = metrics
        self._probe = probe
        self._clock = clock
        self._full_at: float | None = None  # set while paused
        self._free_at_full: dict[Path, int] = {}  # free bytes when a write hit ENOSPC
        self._checked_at = -1e9
        self._lock = asyncio.Lock()

    @property
    def paused(self) -> bool:
        return self._full_at is not None

    def _short(self) -> tuple[Path, int] | None:
        for path in self._paths:
            try:
                free = self._probe(path)
            except OSError:
                continue  # a missing directory is the start-up's business, not ours
            self._metrics.free_bytes.labels(path=str(path)).set(free)
            need = self._min
            if self._free_at_full:
                # After an ENOSPC, one byte above the minimum is not "back": twice
                # the minimum, and at least a MiB more than there was when the
                # write failed (else a minimum of 0 would resume, fail, resume...).
                need = max(need * 2, self._free_at_full.get(path, -_REGAIN) + _REGAIN)
            if free < need:
                return path, free
        return None

    def disk_full(self, where: str) -> None:
        """A write failed with ENOSPC/EDQUOT: pause until space returns."""
        if self._full_at is None:
            full = Path(where)
            # The filesystem that filled is the one to watch: the directory the
            # write was under (or every one, if it was under none of them).
            hit = [p for p in self._paths if full == p or p in full.parents] or list(self._paths)
            for path in hit:
                # One statvfs, on the loop: cheap, and the moment matters.
                with contextlib.suppress(OSError):
                    self._free_at_full[path] = self._probe(path)
            self._pause(Path(where), None, "disk_full")

    def _pause(self, path: Path, free: int | None, reason: str) -> None:
        self._full_at = self._clock()
        self._metrics.storage_paused.set(1)
        self._audit.warning(
            "storage.paused",
            reason=reason,
            path=str(path),
            free_bytes=free,
            min_free_bytes=self._min,
        )

    async def check(self) -> bool:
        """True when there is room to work; re-probes at most once a second."""
        now = self._clock()
        if now - self._checked_at < _RECHECK_S:
            return not self.paused
        async with self._lock:
            self._checked_at = now
            short = await asyncio.to_thread(self._short)
            if short is not None and self._full_at is None:
                self._pause(short[0], short[1], "low_space")
            elif short is None and self._full_at is not None:
                paused_s = round(self._clock() - self._full_at, 3)
                self._full_at, self._free_at_full = None, {}
                self._metrics.storage_paused.set(0)
                self._audit.info("storage.resumed", paused_s=paused_s)
        return not self.paused
