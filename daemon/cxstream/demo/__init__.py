"""``cxstream demo``: the main job, end to end, on the built-in simulators.

``--platform cxone-stream`` (the default) archives twelve recordings of the
stream API; ``cxone-playback`` and ``genesys`` send one contact webhook per
call, as a CXone Studio script or a Genesys Data Action would, and archive
every recording the platform lists for it; ``all`` runs the three in turn.
Each run starts that platform's simulator in this process and the real
daemon as a child, shows progress per recording, then checks every file
independently against the simulator. Exit 0 only if every recording of
every platform run verified.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from cxstream.demo import platforms, stream
from cxstream.demo.runner import Outcome, Scenario, run

PLATFORMS = ("cxone-stream", "cxone-playback", "genesys")
CHOICES = (*PLATFORMS, "all")

_SCENARIOS: dict[str, Callable[[], AbstractAsyncContextManager[Scenario]]] = {
    "cxone-stream": stream.scenario,
    "cxone-playback": platforms.playback,
    "genesys": platforms.genesys,
}


async def _one(platform: str, tmp: Path) -> Outcome:
    async with _SCENARIOS[platform]() as sc:
        return await run(sc, tmp)


def _platform(platform: str, keep: bool, heading: bool) -> Outcome | None:
    tmp = Path(tempfile.mkdtemp(prefix=f"cxstream-demo-{platform}-"))
    if heading:
        print(f"\n=== {platform} " + "=" * max(0, 60 - len(platform)), flush=True)
    try:
        outcome = asyncio.run(_one(platform, tmp))
    except KeyboardInterrupt:
        return None
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    where = "" if keep else "  (removed at exit; `cxstream demo --keep` keeps them)"
    print(f"files: {tmp / 'recordings'}\naudit: {tmp / 'audit.ndjson'}{where}")
    return outcome


def main(*, keep: bool = False, platform: str = "cxone-stream") -> int:
    keep = keep or bool(os.environ.get("CXSTREAM_DEMO_KEEP"))
    chosen = PLATFORMS if platform == "all" else (platform,)
    results: dict[str, Outcome] = {}
    for name in chosen:
        outcome = _platform(name, keep, heading=len(chosen) > 1)
        if outcome is None:
            return 130
        results[name] = outcome
    if len(chosen) > 1:
        print()
        for name, out in results.items():
            mark = "ok" if out.ok else "FAILED"
            print(f"{name:<15} {out.verified}/{out.expected} recordings verified  {mark}")
    return 0 if all(out.ok for out in results.values()) else 1
