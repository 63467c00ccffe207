"""``make bench``: what cxstream costs and how fast it goes, next to curl and aria2c.

Runs each scenario of issue 12 ``--runs`` times (interleaved, so a change in
the machine's load hits every scenario alike), prints medians and per-run
ratios as a table with the issue's targets, and writes everything, every run
included, to ``bench/results.json``. Nothing here fails on a slow number: a
benchmark informs, the test suite decides.

    python -m tests.bench.run [--runs 3] [--only archive,ingest] [--profile DIR]

Scenarios (``tests/bench/scenarios.py``): ``archive`` (60 PCM recordings x 24
segments: the daemon from first webhook to last verified file, then curl and
aria2c -j8 fetching the same batch URLs), ``ingest`` (signed webhooks from 32
parallel senders), ``loaded`` (the same while ``archive`` runs), ``slow`` (500
streams trickling at 16 kB/s), ``stalls`` (two injected stalls per recording).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from tests.bench import scenarios as sc
from tests.bench.targets import TARGETS, render

ALL = ("archive", "ingest", "loaded", "slow", "stalls")


def machine() -> dict[str, Any]:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    commit = ""
    if shutil.which("git"):
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "curl": shutil.which("curl") is not None,
        "aria2c": shutil.which("aria2c") is not None,
    }


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for r in runs for k in r}
    out = {}
    for k in sorted(keys):
        values = [r[k] for r in runs if k in r and not math.isnan(r[k])]
        out[k] = statistics.median(values) if values else math.nan
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="make bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3, help="repetitions; medians are reported")
    p.add_argument("--only", default=",".join(ALL), help=f"comma-separated of {','.join(ALL)}")
    p.add_argument("--recordings", type=int, default=60)
    p.add_argument("--segments", type=int, default=24, help="PCM segments a recording")
    p.add_argument("--concurrency", type=int, default=8, help="streams.concurrency (archive)")
    p.add_argument("--webhooks", type=int, default=10_000, help="webhooks an ingest run")
    p.add_argument("--senders", type=int, default=32, help="parallel webhook connections")
    p.add_argument("--slow-streams", type=int, default=500)
    p.add_argument("--slow-seconds", type=int, default=10, help="length of a slow recording")
    p.add_argument("--slow-window", type=float, default=5.0, help="measured seconds")
    p.add_argument("--stall-recordings", type=int, default=24, help="two stalls each")
    p.add_argument("--idle-timeout", type=float, default=1.0, help="for the stall scenario")
    p.add_argument("--out", type=Path, default=Path("bench/results.json"))
    p.add_argument("--profile", type=Path, help="py-spy the daemon in the first archive run")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    args.only = [s for s in args.only.split(",") if s]
    unknown = [s for s in args.only if s not in ALL]
    if unknown or args.runs < 1:
        p.error(f"unknown scenario {unknown[0]!r}" if unknown else "--runs must be >= 1")
    return args


async def bench(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    archive = sc.ArchiveSize(args.recordings, args.segments, args.concurrency)
    ingest = sc.IngestSize(args.webhooks, args.senders)
    slow = sc.SlowSize(args.slow_streams, args.slow_seconds, args.slow_window)
    stall = sc.StallSize(args.stall_recordings, args.idle_timeout)
    profile = args.profile

    def make(name: str, run: int) -> Callable[[], Awaitable[dict[str, float]]]:
        where = tmp / f"{name}-{run}"
        if name == "archive":
            spy = profile / "archive.raw.txt" if profile is not None and run == 0 else None
            return lambda: sc.archive(where, archive, profile=spy)
        if name == "ingest":
            return lambda: sc.ingest(where, ingest)
        if name == "loaded":
            return lambda: sc.archive(where, archive, ingest=ingest)
        if name == "slow":
            return lambda: sc.slow_streams(where, slow)
        return lambda: sc.stalls(where, stall)

    runs: dict[str, list[dict[str, float]]] = {name: [] for name in args.only}
    for run in range(args.runs):
        for name in args.only:
            t0 = time.perf_counter()
            result = await make(name, run)()
            runs[name].append(result)
            if not args.quiet:
                print(
                    f"  run {run + 1}/{args.runs} {name}: {time.perf_counter() - t0:.1f} s",
                    file=sys.stderr,
                )
            shutil.rmtree(tmp / f"{name}-{run}", ignore_errors=True)
    return {
        "runs": runs,
        "median": {name: medians(r) for name, r in runs.items()},
        "sizes": {
            "archive": vars(archive),
            "ingest": vars(ingest),
            "slow": vars(slow),
            "stalls": vars(stall),
        },
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    tmp = Path(tempfile.mkdtemp(prefix="cxstream-bench-"))
    try:
        out = asyncio.run(bench(args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info["loadavg_end"] = os.getloadavg()
    result = {"machine": info, "runs_each": args.runs, **out}
    result["targets"] = [t.judge(out["median"]) for t in TARGETS]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    print(render(result))
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
