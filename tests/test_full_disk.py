"""A full disk and a journal that cannot write, on real small filesystems.

Each test mounts a tmpfs of a few MiB (root only; skipped with the reason
otherwise) under the daemon's storage or state directory, fills it with a
file the test owns, and frees it again. The daemon is a real process; nothing
of the OS is mocked.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sqlite3
import subprocess
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cxstream.sim.server import SimServer
from tests.conftest import StartDaemon
from tests.harness import Daemon, completed

KIB, MIB = 1024, 1024 * 1024
Mount = Callable[[Path, int], Path]


@pytest.fixture
def mount_tmpfs() -> Iterator[Mount]:
    """Mount a tmpfs of ``size`` bytes at a directory; unmounted after the test.

    Requested before ``start_daemon`` so that the daemon stops first.
    """
    mounted: list[Path] = []

    def mount(path: Path, size: int) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            reason = f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}"
            if os.environ.get("CI"):
                pytest.fail(reason)  # CI runs as root: a silent skip would hide the tests
            pytest.skip(reason)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)], check=False).returncode != 0:
            # Still busy (a daemon a failed test left running): detach it anyway.
            subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path, leave: int = 0) -> Path:
    """A filler file taking all the free space of ``path``'s filesystem but ``leave`` bytes."""
    filler = path / "filler"
    st = os.statvfs(path)
    want = st.f_bavail * st.f_frsize - leave
    block = bytes(64 * KIB)
    with open(filler, "wb", buffering=0) as fh:
        try:
            while want > 0:
                want -= fh.write(block[: min(len(block), want)]) or 0
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


def fill_completely(path: Path) -> Path:
    """Fill to the last page: every further allocation on it fails with ENOSPC."""
    filler = fill(path)
    with open(filler, "ab", buffering=0) as fh, contextlib.suppress(OSError):
        while fh.write(bytes(4 * KIB)):
            pass
    return filler


def free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


async def readyz(http: aiohttp.ClientSession, daemon: Daemon) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{daemon.admin_url}/readyz") as resp:
        return resp.status, await resp.json()


def job_row(state_dir: Path, recording_id: str) -> dict[str, Any]:
    db = sqlite3.connect(f"file:{state_dir / 'journal.sqlite3'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        row = db.execute("SELECT * FROM jobs WHERE recording_id = ?", (recording_id,)).fetchone()
        return dict(row)
    finally:
        db.close()


def verified_wav(path: Path, sim: SimServer, rid: str) -> None:
    with wave.open(str(path), "rb") as w:
        frames = w.readframes(w.getnframes())
    size, sha = sim.expected(rid, "pcm")
    assert (len(frames), hashlib.sha256(frames).hexdigest()) == (size, sha)


def final_files(storage: Path, rid: str) -> list[Path]:
    return [p for p in storage.rglob(f"{rid}.*") if not p.name.startswith(".")]


async def test_a_write_that_fills_the_disk_pauses_and_resumes_without_a_charge(
    tmp_path: Path,
    sim: SimServer,
    mount_tmpfs: Mount,
    start_daemon: StartDaemon,
    http: aiohttp.ClientSession,
) -> None:
    storage = mount_tmpfs(tmp_path / "recordings", 4 * MIB)
    sim.add_recording({"id": "rec-big", "segments": 8, "codecs": ["pcm"]})
    size = sim.expected("rec-big", "pcm")[0]  # 1.9 MB: more than is left
    filler = fill(storage, leave=MIB)
    assert free(storage) < size
    daemon = await start_daemon(
        streams={"checkpoint_bytes": 64 * KIB, "concurrency": 1},
        storage={"min_free_bytes": 256 * KIB},
    )
    assert (await daemon.post(http, completed("rec-big")))[0] == 202

    stopped = await daemon.wait_event("recording.interrupted", recording_id="rec-big")
    assert stopped["reason"] == "disk_full"
    paused = await daemon.wait_event("storage.paused")
    assert paused["reason"] == "disk_full"
    status, body = await readyz(http, daemon)
    assert (status, body["checks"]["disk_space"]) == (503, False)
    row = job_row(tmp_path / "state", "rec-big")
    assert (row["state"], row["attempts"]) == ("queued", 0)
    # Half a recording is on disk, under the part name only.
    assert not final_files(storage, "rec-big")
    assert not daemon.find("recording.failed")
    assert not daemon.find("stream.retry")

    filler.unlink()
    await daemon.wait_event("storage.resumed")
    done = await daemon.wait_event("recording.completed", recording_id="rec-big")
    assert done["attempts"] == 1
    verified_wav(Path(done["path"]), sim, "rec-big")
    # It went on from the last checkpoint written before the disk filled.
    again = daemon.find("recording.started", recording_id="rec-big")
    assert len(again) == 2 and again[1]["resumed_bytes"] > 0
    assert (await readyz(http, daemon))[0] == 200
    assert not daemon.find("recording.failed")
    assert not list(storage.rglob("*.part"))
    assert "Traceback" not in daemon.stderr.decode()
    assert await daemon.stop() == 0


async def test_below_min_free_bytes_no_job_starts_until_space_returns(
    tmp_path: Path,
    sim: SimServer,
    mount_tmpfs: Mount,
    start_daemon: StartDaemon,
    http: aiohttp.ClientSession,
) -> None:
    storage = mount_tmpfs(tmp_path / "recordings", 4 * MIB)
    sim.add_recording({"id": "rec-wait", "segments": 2, "codecs": ["pcm"]})
    filler = fill(storage, leave=512 * KIB)
    daemon = await start_daemon(storage={"min_free_bytes": MIB})
    paused = await daemon.wait_event("storage.paused")
    assert paused["reason"] == "low_space"
    assert paused["path"] == str(storage)
    assert paused["free_bytes"] < MIB and paused["min_free_bytes"] == MIB

    # The webhook is still taken: the journal is the only thing a 202 waits for.
    assert (await daemon.post(http, completed("rec-wait")))[0] == 202
    status, body = await readyz(http, daemon)
    assert (status, body["checks"]["disk_space"]) == (503, False)
    assert job_row(tmp_path / "state", "rec-wait")["state"] == "queued"
    stats = sim.served("rec-wait")
    assert (stats.metadata_requests, stats.stream_requests) == (0, 0)
    assert not daemon.find("recording.started")

    filler.unlink()
    resumed = await daemon.wait_event("storage.resumed")
    assert resumed["paused_s"] > 0
    done = await daemon.wait_event("recording.completed", recording_id="rec-wait")
    assert done["attempts"] == 1
    verified_wav(Path(done["path"]), sim, "rec-wait")
    assert (await readyz(http, daemon))[0] == 200
    assert await daemon.stop() == 0


async def test_a_journal_that_cannot_write_hands_the_job_back_until_it_can(
    tmp_path: Path,
    sim: SimServer,
    mount_tmpfs: Mount,
    start_daemon: StartDaemon,
    http: aiohttp.ClientSession,
) -> None:
    state = mount_tmpfs(tmp_path / "state", 2 * MIB)
    rate = 600_000
    sim.add_recording(
        {
            "id": "rec-j",
            "segments": 10,
            "codecs": ["pcm"],
            "faults": [{"kind": "trickle", "bytes_per_second": rate}],
        }
    )
    size = sim.expected("rec-j", "pcm")[0]  # 2.4 MB at 600 kB/s: four seconds
    daemon = await start_daemon(
        streams={"checkpoint_bytes": 64 * KIB, "concurrency": 1},
        # The guard watches free space too; at 0 it leaves this outage to the journal.
        storage={"min_free_bytes": 0},
    )
    assert (await daemon.post(http, completed("rec-j")))[0] == 202
    stats = sim.served("rec-j")
    await sim.wait_for(lambda: stats.bytes_served >= 0.2 * size, timeout_s=30)
    filler = fill_completely(state)

    stopped = await daemon.wait_event("recording.interrupted", recording_id="rec-j")
    assert stopped["reason"] == "journal"
    status, body = await readyz(http, daemon)
    assert (status, body["checks"]["journal"]) == (503, False)
    assert not daemon.find("recording.failed")

    filler.unlink()
    done = await daemon.wait_event("recording.completed", recording_id="rec-j", timeout_s=60)
    assert done["attempts"] == 1
    verified_wav(Path(done["path"]), sim, "rec-j")
    assert not daemon.find("recording.failed")
    assert job_row(state, "rec-j")["state"] == "completed"
    # It went on from its last checkpoint, not from zero.
    again = daemon.find("recording.started", recording_id="rec-j")
    assert len(again) == 2 and again[1]["resumed_bytes"] > 0
    assert (await readyz(http, daemon))[0] == 200
    assert await daemon.stop() == 0


async def test_a_part_file_whose_write_failed_refuses_to_sync(
    tmp_path: Path, mount_tmpfs: Mount
) -> None:
    """In process: after ENOSPC the part counts bytes the disk does not hold, so
    nothing may fsync and describe it as durable again; closing still works."""
    from cxstream.formats import registry
    from cxstream.sink.part import PartFile

    storage = mount_tmpfs(tmp_path / "recordings", MIB)
    part = PartFile(storage / "rec.wav", registry.PCM, storage)
    await part.create()
    fill_completely(storage)
    with pytest.raises(OSError) as first:
        await part.write(bytes(MIB))  # a full run: hashed and written in one step
    assert first.value.errno == errno.ENOSPC
    for _ in range(2):
        with pytest.raises(OSError, match="unusable after a failed write") as again:
            await part.sync()
        assert again.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        await part.close()
    assert not part.is_open
    await part.discard()
    assert not part.path.exists()
