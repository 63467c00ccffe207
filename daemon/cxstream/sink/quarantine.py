"""Quarantine: bytes that never verified, kept for forensics, never under ``storage.dir``.

An archive must not hold them (a reader would trust a final name), and an
operator must still be able to show CXone support what was served.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path

import orjson

from cxstream.sink.part import PartFile, write_atomic

QUARANTINE_DIR = "quarantine"


async def quarantine(
    part: PartFile, state_dir: Path, recording_id: str, reason: str, attempts: int
) -> Path:
    """Move the part file under ``state_dir/quarantine`` with a reason file beside it."""
    await part.close()
    folder = state_dir / QUARANTINE_DIR
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    dest = folder / f"{recording_id}.{stamp}{part.final_path.suffix}"
    size = part.position
    # shutil.move: the state directory may sit on another filesystem than storage.dir.
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    await asyncio.to_thread(shutil.move, part.path, dest)
    await write_atomic(
        dest.with_name(dest.name + ".reason.json"),
        orjson.dumps(
            {
                "recordingId": recording_id,
                "reason": reason,
                "codec": part.codec,
                "bytes": size,
                "failedBatchStart": part.batch_start,
                "attempts": attempts,
                "quarantinedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            },
            option=orjson.OPT_INDENT_2,
        ),
    )
    return dest
