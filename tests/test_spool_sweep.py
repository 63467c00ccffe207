"""Checkpoints across nodes: a node that comes back keeps only the part files it may resume.

The journal is the real PostgreSQL one (two nodes on one throwaway
database); the spool is a real directory with real part files, links and
strangers in it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cxstream.journal import Checkpoint
from cxstream.sink.spool import HoldsLeases, part_owner, sweep
from tests.test_journal import request

pytest.importorskip("psycopg")
from cxstream.journal.postgres import PostgresJournal

DAY = Path("2026/11/24")


@pytest.fixture
async def nodes(pg_dsn: str) -> AsyncIterator[tuple[PostgresJournal, PostgresJournal]]:
    one = PostgresJournal(pg_dsn, node="node-1", lease_s=30)
    two = PostgresJournal(pg_dsn, node="node-2", lease_s=30)
    await one.open()
    await two.open()
    yield one, two
    await one.close()
    await two.close()


def part(spool: Path, rid: str, ext: str = "opus") -> Path:
    path = spool / DAY / f".{rid}.{ext}.part"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"OggS" + rid.encode())
    return path


def test_part_file_names_give_their_recording() -> None:
    assert part_owner(".rec-1.opus.part") == "rec-1"
    assert part_owner(".rec.v2.final.wav.part") == "rec.v2.final"
    for other in ("rec-1.opus", ".rec-1.opus", "rec-1.opus.part", "..part", ".opus.part"):
        assert part_owner(other) is None, other


async def test_a_node_that_comes_back_removes_the_part_files_it_no_longer_owns(
    tmp_path: Path, nodes: tuple[PostgresJournal, PostgresJournal]
) -> None:
    one, two = nodes
    assert isinstance(one, HoldsLeases)
    # In queue order: node-1 claims the first four and checkpoints each.
    for rid in ("running", "taken", "done", "requeued", "never-claimed"):
        await one.enqueue(request(rid))
    for _ in range(4):
        job = await one.claim()
        assert job is not None
        cp = Checkpoint(codec="opus", done=1, batch=(), batch_start=100, offset=100)
        await one.save_progress(job.id, 0, cp, None)
    # node-1 restarts: its running jobs go back to the queue, still its own.
    assert await one.requeue_running() == 4
    running = await one.claim()
    assert running is not None and running.recording_id == "running"
    assert running.checkpoint is not None  # its own: resumable
    # node-2 takes the next one over, and starts it from zero.
    taken = await two.claim()
    assert taken is not None and taken.recording_id == "taken"
    assert taken.checkpoint is None
    done = await one.claim()
    assert done is not None and done.recording_id == "done"
    await one.complete(done.id, 1, {"recordingId": "done"}, None)
    # "requeued" waits in the queue with node-1's checkpoint; "never-claimed" was never ours.

    spool = tmp_path / "spool"
    keep = [part(spool, "running"), part(spool, "requeued", "wav")]
    stale = [part(spool, rid) for rid in ("taken", "done", "never-claimed", "unknown")]
    stranger = spool / DAY / "notes.txt"
    stranger.write_text("not a part file")
    outside = tmp_path / "precious"
    outside.write_text("must survive")
    (spool / DAY / ".linked.opus.part").symlink_to(outside)

    removed = await sweep(spool, one.still_mine)
    assert removed == ["done", "never-claimed", "taken", "unknown"]
    assert all(p.is_file() for p in keep) and stranger.is_file()
    assert not any(p.exists() for p in stale)
    # A link is never followed, nor removed: only regular files of ours are touched.
    assert (spool / DAY / ".linked.opus.part").is_symlink() and outside.read_text()


async def test_an_empty_or_missing_spool_asks_the_journal_nothing(tmp_path: Path) -> None:
    async def refuse(ids: object) -> set[str]:
        raise AssertionError("the journal was asked about nothing")

    assert await sweep(tmp_path / "absent", refuse) == []
    os.mkdir(tmp_path / "empty")
    assert await sweep(tmp_path / "empty", refuse) == []
