"""The disk guard's rules, with free space as the test says it is."""

from __future__ import annotations

import io
from pathlib import Path

import orjson

from cxstream.audit import audit_to
from cxstream.metrics import Metrics
from cxstream.sink.space import DiskGuard

MIB = 1024 * 1024


class Disk:
    def __init__(self, free: int) -> None:
        self.free = free
        self.now = 0.0

    def probe(self, _path: Path) -> int:
        return self.free

    def clock(self) -> float:
        self.now += 2.0  # every check re-probes (the guard caches for a second)
        return self.now


def guard(disk: Disk, minimum: int) -> tuple[DiskGuard, io.BytesIO]:
    out = io.BytesIO()
    g = DiskGuard(
        (Path("/srv/rec"),), minimum, audit_to(out), Metrics(), probe=disk.probe, clock=disk.clock
    )
    return g, out


def events(out: io.BytesIO) -> list[str]:
    return [orjson.loads(line)["event"] for line in out.getvalue().splitlines()]


async def test_below_the_minimum_pauses_and_above_it_resumes() -> None:
    disk = Disk(free=10 * MIB)
    g, out = guard(disk, minimum=20 * MIB)
    assert not await g.check()
    disk.free = 25 * MIB
    assert await g.check()
    assert events(out) == ["storage.paused", "storage.resumed"]


async def test_after_enospc_space_must_really_come_back() -> None:
    """With no minimum configured, a full disk must not resume, fail and resume again."""
    disk = Disk(free=4096)
    g, out = guard(disk, minimum=0)
    assert await g.check()
    g.disk_full("/srv/rec/2026/11/24")
    assert not await g.check()
    disk.free += 512 * 1024  # a little: not yet
    assert not await g.check()
    disk.free += 600 * 1024  # over a MiB more than at the failure: work again
    assert await g.check()
    assert events(out) == ["storage.paused", "storage.resumed"]


async def test_only_the_filesystem_that_filled_must_regain_space() -> None:
    free = {Path("/srv/rec"): 4096, Path("/var/state"): 50 * 1024 * MIB}
    out = io.BytesIO()
    clock = Disk(0)
    g = DiskGuard(
        tuple(free), 0, audit_to(out), Metrics(), probe=free.__getitem__, clock=clock.clock
    )
    g.disk_full("/srv/rec/2026/11/24")
    assert not await g.check()
    free[Path("/srv/rec")] += 2 * MIB  # the state's filesystem never changed: no matter
    assert await g.check()
