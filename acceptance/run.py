"""Acceptance run for issue 9, written as a stranger from the public docs only.

    .venv/bin/python acceptance/run.py [--keep] [--only cxone,genesys,config,stream]

Prints one PASS/FAIL line per check and exits 0 only if every check passed.
Not part of `make test` (it starts the real daemon several times and takes
about two minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Checks  # noqa: E402

import phase_config  # noqa: E402
import phase_cxone  # noqa: E402
import phase_genesys  # noqa: E402
import phase_stream  # noqa: E402


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", default="config,cxone,genesys,stream")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxacc-"))
    checks = Checks()
    phases = {"config": phase_config.run, "cxone": phase_cxone.run, "genesys": phase_genesys.run, "stream": phase_stream.run}
    t0 = time.monotonic()
    for name in a.only.split(","):
        d = tmp / name
        d.mkdir()
        try:
            await phases[name](d, checks)
        except Exception as e:  # a phase that crashes is one failed check, the others still run
            checks.check(f"{name}: phase ran to the end", False, f"{type(e).__name__}: {e}")
    print(f"# {len(checks.results) - checks.failed} passed, {checks.failed} failed, {time.monotonic() - t0:.0f}s; work dir {tmp}")
    (tmp / "results.json").write_text(json.dumps(checks.results, indent=1))
    if not a.keep and checks.failed == 0:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if checks.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
