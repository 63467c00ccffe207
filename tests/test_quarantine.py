"""Quarantine against a small, shared disk: bounded per job, in total, and by free space."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from cxstream.config import StorageConfig
from cxstream.formats import registry, wav
from cxstream.sink.part import PartFile
from cxstream.sink.quarantine import MARGIN_BYTES, REASON_SUFFIX, Quarantine, evidence_cap

DAY = "2026/11/24"
MIB = 1 << 20


def _cfg(state: Path, **limits: int) -> StorageConfig:
    values = {
        "quarantine_max_bytes": 1 << 30,
        "quarantine_min_free_bytes": 0,
        "quarantine_job_max_bytes": 64 * MIB,
    } | limits
    return StorageConfig(dir=state.parent / "recordings", state_dir=state, **values)


async def _part(root: Path, size: int, rid: str = "rec") -> PartFile:
    part = PartFile(root / DAY / f"{rid}.wav", registry.PCM, root)
    await part.create()
    await part.write(os.urandom(size - size % 2))
    await part.sync()
    return part


def _entries(state: Path) -> list[str]:
    return sorted(os.listdir(state / "quarantine"))


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    root, state = tmp_path / "recordings", tmp_path / "state"
    root.mkdir()
    state.mkdir()
    return root, state


async def test_evidence_is_bounded_by_the_expected_size_plus_a_margin(
    dirs: tuple[Path, Path],
) -> None:
    root, state = dirs
    part = await _part(root, 3 * MIB)  # a server that sent far more than promised
    head = os.pread(part.fileno(), 200_000, 0)
    expected = 100_000
    kept = await Quarantine(_cfg(state)).keep(part, "rec", "size_mismatch", 3, expected)
    assert kept is not None and not kept.bytes_dropped
    cap = expected + MARGIN_BYTES + expected // 100
    assert kept.bytes == cap == kept.path.stat().st_size
    assert kept.path.read_bytes() == head[:cap]
    reason = orjson.loads(kept.path.with_name(kept.path.name + REASON_SUFFIX).read_bytes())
    assert reason["bytes"] == cap and reason["truncated"] is True
    assert reason["partBytes"] == wav.HEADER_BYTES + 3 * MIB and reason["bytesDropped"] is False
    assert not part.path.exists()  # the part is gone from storage.dir either way


async def test_without_an_expected_size_the_configured_per_job_cap_holds(
    dirs: tuple[Path, Path],
) -> None:
    root, state = dirs
    part = await _part(root, 2 * MIB)
    cfg = _cfg(state, quarantine_job_max_bytes=MIB)
    kept = await Quarantine(cfg).keep(part, "rec", "repr_digest_mismatch", 1, None)
    assert kept is not None and kept.bytes == MIB == evidence_cap(None, cfg)


async def test_the_total_cap_evicts_the_oldest_entries_first(dirs: tuple[Path, Path]) -> None:
    root, state = dirs
    cfg = _cfg(state, quarantine_max_bytes=3 * MIB)
    quarantine = Quarantine(cfg)
    paths = []
    for i in range(3):
        part = await _part(root, 900 * 1024, f"rec-{i}")
        kept = await quarantine.keep(part, f"rec-{i}", "x", 1, None)
        assert kept is not None and kept.evicted == 0
        paths.append(kept.path)
        # Ages by mtime, a second apart, whatever the clock's resolution.
        for p in (kept.path, kept.path.with_name(kept.path.name + REASON_SUFFIX)):
            os.utime(p, (1_000_000 + i, 1_000_000 + i))
    # A link planted in the quarantine is neither followed, counted nor removed.
    outside = root.parent / "big-outside"
    outside.write_bytes(b"\0" * (4 * MIB))
    (state / "quarantine" / "planted").symlink_to(outside)
    kept = await quarantine.keep(await _part(root, 900 * 1024, "rec-3"), "rec-3", "x", 1, None)
    assert kept is not None
    assert kept.evicted == 1
    assert not paths[0].exists() and paths[1].exists() and paths[2].exists()
    assert not any(name.startswith("rec-0.") for name in _entries(state))
    total = sum(
        (state / "quarantine" / n).stat().st_size
        for n in _entries(state)
        if not (state / "quarantine" / n).is_symlink()
    )
    assert total <= cfg.quarantine_max_bytes
    assert outside.stat().st_size == 4 * MIB and (state / "quarantine" / "planted").is_symlink()


async def test_a_link_planted_as_the_quarantine_dir_is_not_followed(
    dirs: tuple[Path, Path],
) -> None:
    root, state = dirs
    outside = root.parent / "outside"
    outside.mkdir()
    (state / "quarantine").symlink_to(outside, target_is_directory=True)
    part = await _part(root, 100_000)
    assert await Quarantine(_cfg(state)).keep(part, "rec", "x", 1, None) is None
    assert os.listdir(outside) == []
    assert not part.path.exists()


# -- a small real filesystem -------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: the state directory of a nearly full disk."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs: {done.stderr.decode(errors='replace').strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)  # CI runs as root: a silent skip would hide the test
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_below_the_free_space_floor_only_the_reason_is_kept(
    tmp_path: Path, small_fs: Path
) -> None:
    root = tmp_path / "recordings"
    root.mkdir()
    part = await _part(root, 512 * 1024)
    cfg = _cfg(small_fs, quarantine_min_free_bytes=8 * MIB)
    kept = await Quarantine(cfg).keep(part, "rec", "sha256_mismatch", 2, 512 * 1024)
    assert kept is not None and kept.bytes_dropped and kept.bytes == 0
    assert kept.path.name.endswith(REASON_SUFFIX)
    reason = orjson.loads(kept.path.read_bytes())
    assert reason["bytesDropped"] is True and reason["bytes"] == 0
    assert _entries(small_fs) == [kept.path.name]
    assert not part.path.exists()


async def test_evidence_larger_than_the_free_space_is_not_even_started(
    tmp_path: Path, small_fs: Path
) -> None:
    root = tmp_path / "recordings"
    root.mkdir()
    part = await _part(root, 6 * MIB)  # the metadata promised 6 MiB; the disk has 4
    kept = await Quarantine(_cfg(small_fs)).keep(part, "rec", "size_mismatch", 1, 6 * MIB)
    assert kept is not None and kept.bytes_dropped
    assert _entries(small_fs) == [kept.path.name]
    stat = os.statvfs(small_fs)
    assert stat.f_bavail * stat.f_frsize > 3 * MIB  # nothing filled it, not even for a moment
