"""The sink against a hostile disk: planted links, foreign files, taken names (real files).

Every test that plants a link checks two things: the write did not go
through it (the target outside the tree is byte-for-byte and inode-for-inode
what it was) and the planted thing itself was neither followed nor deleted.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson
import pytest

from cxstream.formats import registry, wav
from cxstream.sim.server import SimServer
from cxstream.sink.part import PartFile
from cxstream.sink.publish import conflict_stem, write_sidecar
from cxstream.sink.safe_fs import UnsafePath
from tests.conftest import StartDaemon
from tests.harness import completed

DAY = "2026/11/24"
AUDIO = bytes(range(256)) * 40  # whole 16-bit samples


class Victim:
    """A file outside the tree that a followed link would overwrite."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "outside"
        self.dir.mkdir(exist_ok=True)
        self.path = self.dir / "victim"
        self.path.write_bytes(b"precious bytes that must survive")
        self.before = self._state()

    def _state(self) -> tuple[bytes, int, int, list[str]]:
        st = self.path.stat()
        return self.path.read_bytes(), st.st_ino, st.st_mtime_ns, sorted(os.listdir(self.dir))

    def untouched(self) -> bool:
        return self._state() == self.before


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "recordings"
    (path / DAY).mkdir(parents=True)
    return path


def _final(root: Path, rid: str = "rec") -> Path:
    return root / DAY / f"{rid}.wav"


async def _sealed(root: Path, rid: str = "rec", audio: bytes = AUDIO) -> tuple[PartFile, str]:
    part = PartFile(_final(root, rid), registry.PCM, root)
    await part.create()
    await part.write(audio)
    return part, await part.seal()


def _wav(audio: bytes = AUDIO) -> bytes:
    return wav.header(len(audio)) + audio


def _sidecar(sha: str) -> bytes:
    return orjson.dumps({"recordingId": "rec", "sha256": sha})


def _plant_link(where: Path, victim: Victim) -> None:
    where.symlink_to(victim.path)


def _plant_dir(where: Path, victim: Victim) -> None:
    where.mkdir()


def _plant_fifo(where: Path, victim: Victim) -> None:
    os.mkfifo(where)


PLANTS: dict[str, Callable[[Path, Victim], None]] = {
    "symlink": _plant_link,
    "directory": _plant_dir,
    "fifo": _plant_fifo,
}


# -- the part file ---------------------------------------------------------


@pytest.mark.parametrize("plant", sorted(PLANTS))
async def test_a_thing_planted_at_the_part_name_is_refused_not_followed(
    root: Path, tmp_path: Path, plant: str
) -> None:
    victim = Victim(tmp_path)
    part_path = root / DAY / ".rec.wav.part"
    PLANTS[plant](part_path, victim)
    part = PartFile(_final(root), registry.PCM, root)
    with pytest.raises(UnsafePath, match=r"\.rec\.wav\.part is"):
        await part.create()
    with pytest.raises(UnsafePath):
        await part.resume(wav.HEADER_BYTES, wav.HEADER_BYTES)
    await part.discard()
    assert victim.untouched()
    assert os.path.lexists(part_path)  # refused, and not deleted either
    assert not _final(root).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a file owned by another uid")
async def test_someone_elses_file_at_the_part_name_is_neither_reused_nor_deleted(
    root: Path,
) -> None:
    part_path = root / DAY / ".rec.wav.part"
    part_path.write_bytes(b"not ours")
    os.chown(part_path, 65534, 65534)
    part = PartFile(_final(root), registry.PCM, root)
    with pytest.raises(UnsafePath, match="owned by uid 65534"):
        await part.create()
    with pytest.raises(UnsafePath, match="owned by uid 65534"):
        await part.resume(wav.HEADER_BYTES, wav.HEADER_BYTES)
    await part.discard()
    assert part_path.read_bytes() == b"not ours"


async def test_a_stale_part_of_ours_is_replaced_by_a_fresh_one(root: Path) -> None:
    part_path = root / DAY / ".rec.wav.part"
    part_path.write_bytes(b"left by a run that crashed")
    part, sha = await _sealed(root)
    assert (await part.publish(sha, "rec")).path == _final(root)
    assert _final(root).read_bytes() == _wav()
    assert not part_path.exists()


async def test_a_part_also_linked_elsewhere_is_not_resumed(root: Path) -> None:
    """A crash between publication's link and its unlink: writing would change the archive."""
    part, _ = await _sealed(root)
    await part.close()
    os.link(part.path, _final(root))
    again = PartFile(_final(root), registry.PCM, root)
    assert not await again.resume(wav.HEADER_BYTES, wav.HEADER_BYTES + 100)
    await again.create()
    await again.discard()
    assert _final(root).read_bytes() == _wav()


# -- directories below storage.dir ---------------------------------------------


@pytest.mark.parametrize("component", ["2026", "2026/11", "2026/11/24"])
async def test_a_directory_replaced_by_a_link_is_never_written_through(
    tmp_path: Path, component: str
) -> None:
    root = tmp_path / "recordings"
    victim = Victim(tmp_path)
    (root / component).parent.mkdir(parents=True, exist_ok=True)
    (root / component).symlink_to(victim.dir, target_is_directory=True)
    # The link's target could hold a full tree: make it so, it must not matter.
    (victim.dir / "11" / "24").mkdir(parents=True)
    (victim.dir / "24").mkdir()
    victim.before = victim._state()
    part = PartFile(_final(root), registry.PCM, root)
    with pytest.raises(UnsafePath, match=f"{component} under .* is a symlink"):
        await part.create()
    await part.discard()
    assert victim.untouched()
    assert not [p for p in victim.dir.rglob("*") if p.is_file() and p != victim.path]
    assert (root / component).is_symlink()


async def test_the_configured_root_may_itself_be_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    root = tmp_path / "recordings"
    root.symlink_to(real, target_is_directory=True)
    part, sha = await _sealed(root)
    assert (await part.publish(sha, "rec")).path == _final(root)
    assert (real / DAY / "rec.wav").read_bytes() == _wav()


@pytest.mark.parametrize(("swap", "error"), [("link", "is a symlink"), ("dir", "was replaced")])
async def test_a_day_directory_swapped_before_publication_fails_safely(
    root: Path, tmp_path: Path, swap: str, error: str
) -> None:
    victim = Victim(tmp_path)
    part, sha = await _sealed(root)
    day = root / DAY
    day.rename(root / "2026/11/moved")
    if swap == "link":
        day.symlink_to(victim.dir, target_is_directory=True)
    else:
        day.mkdir()
    with pytest.raises(UnsafePath, match=error):
        await part.publish(sha, "rec")
    assert not [p for p in root.rglob("*.wav")]
    await part.discard()
    assert victim.untouched()
    # Nothing published anywhere, and our part is gone from the real directory.
    assert os.listdir(root / "2026/11/moved") == []


async def test_a_part_name_swapped_before_publication_is_not_published(
    root: Path, tmp_path: Path
) -> None:
    victim = Victim(tmp_path)
    part, sha = await _sealed(root)
    part.path.unlink()
    part.path.symlink_to(victim.path)
    with pytest.raises(UnsafePath, match="replaced while it was being published"):
        await part.publish(sha, "rec")
    await part.discard()
    assert victim.untouched()
    assert not os.path.lexists(_final(root))
    assert part.path.is_symlink()


# -- publication never clobbers ------------------------------------------------


async def test_identical_bytes_under_the_final_name_complete_without_a_rewrite(
    root: Path,
) -> None:
    _final(root).write_bytes(_wav())
    before = _final(root).stat()
    part, sha = await _sealed(root)
    published = await part.publish(sha, "rec")
    assert published.path == _final(root) and published.conflict is None
    after = _final(root).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not part.path.exists()
    await write_sidecar(root, published, _sidecar(sha))
    assert orjson.loads((root / DAY / "rec.json").read_bytes())["sha256"] == sha


async def test_other_bytes_under_the_final_name_are_kept_and_ours_go_beside(
    root: Path,
) -> None:
    other = _wav(bytes(2000))
    _final(root).write_bytes(other)
    part, sha = await _sealed(root)
    published = await part.publish(sha, "rec")
    stem = conflict_stem("rec", sha)
    assert stem == f"rec.conflict-{sha[:12]}"
    assert published.path == root / DAY / f"{stem}.wav"
    assert published.sidecar == root / DAY / f"{stem}.json"
    assert published.conflict is not None
    assert published.conflict.existing == _final(root)
    assert published.conflict.existing_sha256 == hashlib.sha256(other).hexdigest()
    assert _final(root).read_bytes() == other
    assert published.path.read_bytes() == _wav()
    await write_sidecar(root, published, _sidecar(sha))
    assert published.sidecar.exists() and not (root / DAY / "rec.json").exists()


@pytest.mark.parametrize("plant", sorted(PLANTS))
async def test_a_thing_at_the_final_name_is_a_conflict_not_a_target(
    root: Path, tmp_path: Path, plant: str
) -> None:
    victim = Victim(tmp_path)
    PLANTS[plant](_final(root), victim)
    part, sha = await _sealed(root)
    published = await part.publish(sha, "rec")
    assert published.conflict is not None and published.conflict.existing_sha256 is None
    assert published.path.name == f"{conflict_stem('rec', sha)}.wav"
    assert victim.untouched()
    assert os.path.lexists(_final(root))


async def test_a_sidecar_of_these_bytes_is_kept_another_is_a_conflict(root: Path) -> None:
    part, sha = await _sealed(root)
    kept = _sidecar(sha) + b"\n"  # an earlier run's, with its own timings
    (root / DAY / "rec.json").write_bytes(kept)
    published = await part.publish(sha, "rec")
    assert published.path == _final(root) and published.keep_sidecar
    await write_sidecar(root, published, _sidecar(sha))
    assert (root / DAY / "rec.json").read_bytes() == kept

    other_root = root.parent / "other"
    (other_root / DAY).mkdir(parents=True)
    foreign = _sidecar("0" * 64)
    (other_root / DAY / "rec.json").write_bytes(foreign)
    part, sha = await _sealed(other_root)
    published = await part.publish(sha, "rec")
    assert published.conflict is not None
    assert published.conflict.existing == other_root / DAY / "rec.json"
    assert published.path.name == f"{conflict_stem('rec', sha)}.wav"
    assert not _final(other_root).exists()
    await write_sidecar(other_root, published, _sidecar(sha))
    assert (other_root / DAY / "rec.json").read_bytes() == foreign


async def test_both_names_taken_publishes_nothing(root: Path) -> None:
    part, sha = await _sealed(root)
    _final(root).write_bytes(b"one")
    (root / DAY / f"{conflict_stem('rec', sha)}.wav").write_bytes(b"two")
    with pytest.raises(UnsafePath, match="taken by other files"):
        await part.publish(sha, "rec")
    await part.discard()
    assert _final(root).read_bytes() == b"one"
    assert sorted(os.listdir(root / DAY)) == sorted(["rec.wav", f"{conflict_stem('rec', sha)}.wav"])


@pytest.mark.parametrize("plant", sorted(PLANTS))
async def test_a_thing_planted_at_the_sidecar_temp_name_is_refused(
    root: Path, tmp_path: Path, plant: str
) -> None:
    victim = Victim(tmp_path)
    part, sha = await _sealed(root)
    published = await part.publish(sha, "rec")
    PLANTS[plant](root / DAY / ".rec.json.part", victim)
    with pytest.raises(UnsafePath, match=r"\.rec\.json\.part is"):
        await write_sidecar(root, published, _sidecar(sha))
    assert victim.untouched()
    assert not (root / DAY / "rec.json").exists()
    assert os.path.lexists(root / DAY / ".rec.json.part")


async def test_a_link_planted_at_the_sidecar_name_is_left_alone(root: Path, tmp_path: Path) -> None:
    victim = Victim(tmp_path)
    part, sha = await _sealed(root)
    published = await part.publish(sha, "rec")
    (root / DAY / "rec.json").symlink_to(victim.path)
    with pytest.raises(UnsafePath, match="appeared"):
        await write_sidecar(root, published, _sidecar(sha))
    assert victim.untouched()
    assert (root / DAY / "rec.json").is_symlink()
    assert not (root / DAY / ".rec.json.part").exists()


# -- the daemon, end to end through the simulator --------------------------------


async def test_daemon_a_planted_part_link_fails_the_job_and_writes_nothing_through_it(
    sim: SimServer, start_daemon: StartDaemon, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    victim = Victim(tmp_path)
    day = tmp_path / "recordings" / DAY
    day.mkdir(parents=True)
    (day / ".rec-a.opus.part").symlink_to(victim.path)
    sim.add_recording({"id": "rec-a", "segments": 2, "codecs": ["opus"]})
    daemon = await start_daemon()
    assert (await daemon.post(http, completed("rec-a")))[0] == 202
    failed = await daemon.wait_event("recording.failed", recording_id="rec-a")
    assert failed["error"].startswith("unsafe_path: .rec-a.opus.part is a symlink")
    assert failed["attempts"] == 1
    assert victim.untouched()
    assert sorted(os.listdir(day)) == [".rec-a.opus.part"]
    assert await daemon.stop() == 0
    assert b"Traceback" not in daemon.stderr


async def test_daemon_publishes_beside_other_bytes_and_keeps_identical_ones(
    sim: SimServer, start_daemon: StartDaemon, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    day = tmp_path / "recordings" / DAY
    day.mkdir(parents=True)
    (day / "rec-b.opus").write_bytes(b"an older, different recording")
    sim.add_recording({"id": "rec-b", "segments": 2, "codecs": ["opus"]})
    sim.add_recording({"id": "rec-c", "segments": 2, "codecs": ["opus"]})
    daemon = await start_daemon()
    assert (await daemon.post(http, completed("rec-b")))[0] == 202
    assert (await daemon.post(http, completed("rec-c")))[0] == 202
    done = await daemon.wait_event("recording.completed", recording_id="rec-b")
    conflict = daemon.find("recording.conflict", recording_id="rec-b")[0]
    stem = conflict_stem("rec-b", done["sha256"])
    assert conflict["path"] == str(day / "rec-b.opus")
    assert conflict["published"] == done["path"] == str(day / f"{stem}.opus")
    assert conflict["sha256"] == done["sha256"]
    assert (
        conflict["existing_sha256"] == hashlib.sha256(b"an older, different recording").hexdigest()
    )
    assert (day / "rec-b.opus").read_bytes() == b"an older, different recording"
    assert hashlib.sha256((day / f"{stem}.opus").read_bytes()).hexdigest() == done["sha256"]
    sidecar = orjson.loads((day / f"{stem}.json").read_bytes())
    assert sidecar["path"] == done["path"] and not (day / "rec-b.json").exists()

    first = await daemon.wait_event("recording.completed", recording_id="rec-c")
    assert first["path"] == str(day / "rec-c.opus")
    before = (day / "rec-c.opus").stat()
    sidecar_before = (day / "rec-c.json").read_bytes()
    assert await daemon.stop() == 0
    # The journal is lost (a new state_dir) and CXone sends the webhook again:
    # the same bytes are fetched, and the archive keeps the file it has.
    again = await start_daemon(storage={"state_dir": str(tmp_path / "state-2")})
    assert (await again.post(http, completed("rec-c")))[0] == 202
    second = await again.wait_event("recording.completed", recording_id="rec-c")
    assert second["path"] == first["path"] and second["sha256"] == first["sha256"]
    after = (day / "rec-c.opus").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert (day / "rec-c.json").read_bytes() == sidecar_before
    assert not again.find("recording.conflict")
    assert sorted(os.listdir(day)) == sorted(
        ["rec-b.opus", f"{stem}.opus", f"{stem}.json", "rec-c.opus", "rec-c.json"]
    )
    assert await again.stop() == 0
