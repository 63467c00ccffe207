"""The five measurements of issue 12, each a function returning one run's numbers.

Every scenario starts its own simulator and daemon (separate processes, so the
harness, the simulator and the daemon each show up on their own in /proc) and
returns a flat dict of floats; ``run.py`` repeats them and takes medians.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from tests.bench.procs import (
    PCM_SEGMENT_BYTES,
    BenchDaemon,
    Sim,
    Usage,
    batch_urls,
    cpu_s,
    cpu_split,
    iso_ts,
    pcm_corpus,
    run_measured,
    status_kib,
)
from tests.harness import WEBHOOK_SECRET, completed, sign_raw

WAV_HEADER = 44
LAG = "cxstream_event_loop_lag_seconds"


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def post_all(daemon: BenchDaemon, ids: Sequence[str], concurrency: int = 8) -> None:
    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as http:

        async def one(rid: str) -> None:
            body = completed(rid)
            async with sem, http.post(daemon.webhook_url, data=body, headers=sign_raw(body)) as r:
                if r.status != 202:
                    raise RuntimeError(f"webhook for {rid}: {r.status} {await r.text()}")

        await asyncio.gather(*(one(rid) for rid in ids))


async def wait_completed(daemon: BenchDaemon, ids: Sequence[str], timeout_s: float) -> float:
    """The audit time of the last ``recording.completed``; raises if any failed."""
    want = set(ids)

    def done() -> bool:
        daemon.read()
        failed = [
            e
            for e in daemon.events
            if e.get("event") == "recording.failed" and e["recording_id"] in want
        ]
        if failed:
            raise RuntimeError(f"recording failed: {failed[0]}")
        got = {e["recording_id"] for e in daemon.events if e.get("event") == "recording.completed"}
        return want <= got

    await daemon.wait_for(done, timeout_s)
    return max(
        iso_ts(e)
        for e in daemon.events
        if e.get("event") == "recording.completed" and e["recording_id"] in want
    )


# -- 1. archive throughput against curl and aria2c -----------------------------


@dataclass(frozen=True)
class ArchiveSize:
    recordings: int = 60
    segments: int = 24
    concurrency: int = 8


def _check_files(root: Path, count: int, size: int, pattern: str) -> None:
    files = [p for p in root.rglob(pattern) if p.is_file()]
    bad = [p for p in files if p.stat().st_size != size]
    if len(files) != count or bad:
        raise RuntimeError(f"{root}: {len(files)} files of {count}, {len(bad)} of the wrong size")


def _fsync_all(root: Path) -> float:
    t0 = time.perf_counter()
    for path in root.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.perf_counter() - t0


def _curl(urls: list[str], token: str, out: Path) -> Usage:
    out.mkdir(parents=True)
    config = out.parent / "curl.cfg"
    lines = ["silent", "fail", f'header = "Authorization: Bearer {token}"']
    for i, url in enumerate(urls):
        lines += [f'url = "{url}"', f'output = "{out / f"f{i}"}"']
    config.write_text("\n".join(lines) + "\n")
    return run_measured(["curl", "-K", str(config)])


def _aria2c(urls: list[str], token: str, out: Path, jobs: int) -> Usage:
    out.mkdir(parents=True)
    listing = out.parent / "aria2c.txt"
    listing.write_text("".join(f"{u}\n  out=f{i}\n" for i, u in enumerate(urls)))
    argv = ["aria2c", "-q", "-j", str(jobs), "-x1", "-d", str(out), "-i", str(listing)]
    argv += [f"--header=Authorization: Bearer {token}", "--file-allocation=none"]
    argv += ["--allow-overwrite=true", "--auto-file-renaming=false", "--summary-interval=0"]
    return run_measured(argv)


async def archive(
    tmp: Path,
    size: ArchiveSize,
    *,
    tools: Sequence[str] = ("curl", "aria2c"),
    ingest: IngestSize | None = None,
    profile: Path | None = None,
) -> dict[str, float]:
    """The daemon archives N PCM recordings; curl and aria2c fetch the same batches.

    With ``ingest``, a webhook sender runs beside the archive from its first
    webhook: the numbers are then the sender's, under load.
    """
    ids = [f"ar{i:04d}" for i in range(size.recordings)]
    source = size.segments * PCM_SEGMENT_BYTES
    file_size = WAV_HEADER + source
    total = size.recordings * source
    out: dict[str, float] = {"mb": total / 1e6, "recordings": size.recordings}
    with Sim(pcm_corpus(ids, size.segments), tmp / "sim") as sim:
        daemon = BenchDaemon(
            tmp / "daemon",
            sim,
            streams={"concurrency": size.concurrency, "idle_timeout_s": 15.0, "max_attempts": 10},
        )
        await daemon.start()
        sender = None
        spy = None
        try:
            if ingest is not None:
                sender = _start_sender(daemon, ingest)
            if profile is not None:
                spy = _start_py_spy(daemon.pid, profile)
            async with aiohttp.ClientSession() as http:
                m0 = await daemon.metrics(http)
                sim0, split0, t0 = cpu_s(sim.pid), cpu_split(daemon.pid), time.time()
                if sender is not None:
                    sender.go()
                await post_all(daemon, ids)
                last = await wait_completed(daemon, ids, timeout_s=600)
                split1, sim1 = cpu_split(daemon.pid), cpu_s(sim.pid)
                m1 = await daemon.metrics(http)
            out["daemon_lag_p99_ms"] = 1000 * lag_quantile(m0, m1, 0.99)
            if sender is not None:
                # Only the webhooks answered while the archive ran count.
                out.update(await asyncio.to_thread(sender.result, (t0, last)))
                out.update(journal_ms(daemon, (t0, last)))
            out["daemon_wall_s"] = last - t0
            out["daemon_user_s"] = split1[0] - split0[0]
            out["daemon_sys_s"] = split1[1] - split0[1]
            out["daemon_cpu_s"] = out["daemon_user_s"] + out["daemon_sys_s"]
            out["daemon_peak_rss_mib"] = status_kib(daemon.pid, "VmHWM") / 1024
            out["daemon_sim_cpu_s"] = sim1 - sim0
            out["cpu_ms_per_mb"] = 1000 * out["daemon_cpu_s"] / out["mb"]
            out["cpu_ms_per_recording"] = 1000 * out["daemon_cpu_s"] / size.recordings
        finally:
            if spy is not None:
                _stop_py_spy(spy)
            daemon.stop()
        _check_files(daemon.tmp / "recordings", size.recordings, file_size, "*.wav")
        shutil.rmtree(daemon.tmp / "recordings")
        if ingest is not None:
            return out
        async with aiohttp.ClientSession() as http:
            token = await sim.token(http)
        urls = batch_urls(sim.base_url, ids, size.segments)
        batch_sizes = [
            min(3, size.segments - s) * PCM_SEGMENT_BYTES for s in range(0, size.segments, 3)
        ]
        for tool in tools:
            if shutil.which(tool) is None:
                continue
            dest = tmp / tool / "out"
            sim0 = cpu_s(sim.pid)
            if tool == "curl":
                usage = await asyncio.to_thread(_curl, urls, token, dest)
            else:
                usage = await asyncio.to_thread(_aria2c, urls, token, dest, size.concurrency)
            sim1 = cpu_s(sim.pid)
            if usage.returncode != 0:
                raise RuntimeError(f"{tool} exited {usage.returncode}")
            # What the daemon does before its 202-equivalent and curl does not:
            # make the files durable. Timed apart, so both figures are visible.
            out[f"{tool}_fsync_s"] = await asyncio.to_thread(_fsync_all, dest)
            got = sorted(p.stat().st_size for p in dest.iterdir())
            if got != sorted(batch_sizes * size.recordings):
                raise RuntimeError(f"{tool} did not fetch every batch whole")
            shutil.rmtree(dest)
            out[f"{tool}_wall_s"] = usage.wall_s
            out[f"{tool}_cpu_s"] = usage.cpu_s
            out[f"{tool}_peak_rss_mib"] = usage.maxrss_kib / 1024
            out[f"{tool}_sim_cpu_s"] = sim1 - sim0
            # Ratios per run: both sides of each met the same machine load.
            out[f"wall_vs_{tool}"] = out["daemon_wall_s"] / usage.wall_s
            out[f"cpu_vs_{tool}"] = out["daemon_cpu_s"] / max(usage.cpu_s, 1e-3)
    return out


# -- 3. webhook ingest ---------------------------------------------------------


@dataclass(frozen=True)
class IngestSize:
    webhooks: int = 10_000
    senders: int = 32


class _Sender:
    """``python -m tests.bench.sender`` with its requests built, waiting for "go"."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.cpu0 = 0.0

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def result(self, window: tuple[float, float] | None = None) -> dict[str, float]:
        """The sender's numbers; with ``window`` (wall-clock start, end), it is told
        to stop and only the answers that arrived inside the window count."""
        raw, err = self.proc.communicate(b"stop\n" if window else None, timeout=600)
        if self.proc.returncode != 0:
            raise RuntimeError(f"sender failed: {err.decode()[-500:]}")
        r = orjson.loads(raw)
        lat, wall = r["latencies_ms"], r["wall_s"]
        accepted = r["statuses"].get("202", 0)
        if window is not None:
            start, end = window
            lat = [x for x, t in zip(lat, r["finished"], strict=True) if start <= t <= end]
            accepted, wall = len(lat), end - start
        return {
            "ingest_not_202": float(r["count"] - r["statuses"].get("202", 0)),
            "ingest_sent": r["count"],
            "ingest_accepted": accepted,
            "ingest_per_s": accepted / wall,
            "ingest_wall_s": wall,
            "ingest_p50_ms": percentile(lat, 50),
            "ingest_p99_ms": percentile(lat, 99),
            "ingest_max_ms": max(lat, default=math.nan),
            "ingest_sender_cpu_s": r["cpu_s"],
        }


def journal_ms(daemon: BenchDaemon, window: tuple[float, float] | None = None) -> dict[str, float]:
    """How long the journal held each accepted webhook (its group's transaction and
    fsync, and the wait for the thread), from the ``webhook.accepted`` lines."""
    lines = [e for e in daemon.find("webhook.accepted") if e["recording_id"].startswith("wh")]
    if window is not None:
        lines = [e for e in lines if window[0] <= iso_ts(e) <= window[1]]
    values = [float(e["journal_ms"]) for e in lines]
    return {
        "ingest_journal_p50_ms": percentile(values, 50),
        "ingest_journal_p99_ms": percentile(values, 99),
    }


def _start_sender(daemon: BenchDaemon, size: IngestSize) -> _Sender:
    argv = [sys.executable, "-m", "tests.bench.sender", "--url", daemon.webhook_url]
    argv += ["--secret", WEBHOOK_SECRET, "--count", str(size.webhooks)]
    argv += ["--concurrency", str(size.senders), "--prefix", "wh", "--wait"]
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    if proc.stderr.readline().strip() != b"ready":
        proc.kill()
        raise RuntimeError("webhook sender did not start")
    return _Sender(proc)


async def ingest(tmp: Path, size: IngestSize) -> dict[str, float]:
    """Signed webhooks from parallel senders, nothing else running.

    One worker, an empty simulator: each accepted job is claimed and fails
    (404) in the background, as little beside the ingest as a daemon has.
    """
    with Sim([], tmp / "sim") as sim:
        daemon = BenchDaemon(tmp / "daemon", sim, streams={"concurrency": 1})
        await daemon.start()
        try:
            sender = _start_sender(daemon, size)
            cpu0 = cpu_s(daemon.pid)
            sender.go()
            out = await asyncio.to_thread(sender.result)
            out["ingest_daemon_cpu_s"] = cpu_s(daemon.pid) - cpu0
            out["ingest_daemon_cpu_us_each"] = 1e6 * out["ingest_daemon_cpu_s"] / size.webhooks
            out.update(journal_ms(daemon))
        finally:
            daemon.stop()
    return out


# -- 2. many slow streams ------------------------------------------------------


@dataclass(frozen=True)
class SlowSize:
    streams: int = 500
    seconds: int = 10  # each recording's length, trickled in real time
    window_s: float = 5.0  # the measured stretch, all streams live
    bytes_per_second: int = 16_000


def _lag_buckets(metrics: dict[str, Any]) -> dict[float, float]:
    out = {}
    for key, value in metrics.items():
        if key.startswith(f"{LAG}_bucket{{"):
            le = key.split('le="')[1].split('"')[0]
            out[math.inf if le == "+Inf" else float(le)] = value
    return out


def lag_quantile(before: dict[str, Any], after: dict[str, Any], q: float) -> float:
    """The q-quantile (0..1) of the lag samples between two scrapes: the upper
    bound of the bucket it falls in (a histogram cannot say more)."""
    b0, b1 = _lag_buckets(before), _lag_buckets(after)
    count = b1[math.inf] - b0.get(math.inf, 0)
    if count <= 0:
        return math.nan
    for le in sorted(b1):
        if b1[le] - b0.get(le, 0) >= q * count:
            return le
    return math.inf


async def slow_streams(tmp: Path, size: SlowSize) -> dict[str, float]:
    ids = [f"sl{i:04d}" for i in range(size.streams)]
    trickle = {"kind": "trickle", "bytes_per_second": size.bytes_per_second}
    corpus = pcm_corpus(ids, 1, segment_seconds=size.seconds, faults=[trickle])
    with Sim(corpus, tmp / "sim") as sim:
        daemon = BenchDaemon(
            tmp / "daemon",
            sim,
            streams={"concurrency": size.streams, "idle_timeout_s": 15.0, "max_attempts": 10},
        )
        await daemon.start()
        try:
            async with aiohttp.ClientSession() as http:
                await post_all(daemon, ids, concurrency=32)
                active = "cxstream_active_streams"

                async def all_live() -> bool:
                    return bool((await daemon.metrics(http)).get(active, 0) >= size.streams)

                async with asyncio.timeout(60):
                    # Polled: the daemon is another process; /metrics is how it tells.
                    while not await all_live():  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
                m0 = await daemon.metrics(http)
                cpu0, sim0, t0 = cpu_s(daemon.pid), cpu_s(sim.pid), time.perf_counter()
                rss = 0
                while time.perf_counter() - t0 < size.window_s:
                    rss = max(rss, status_kib(daemon.pid, "VmRSS"))
                    await asyncio.sleep(0.25)
                cpu1, sim1, t1 = cpu_s(daemon.pid), cpu_s(sim.pid), time.perf_counter()
                m1 = await daemon.metrics(http)
            window = t1 - t0
            received = m1["cxstream_stream_bytes_total"] - m0["cxstream_stream_bytes_total"]
            live = min(m0.get(active, 0), m1.get(active, 0))
            await wait_completed(daemon, ids, timeout_s=size.seconds * 4 + 60)
            out = {
                "slow_streams": float(size.streams),
                "slow_live_at_end": float(live),
                "slow_rss_mib": rss / 1024,
                "slow_peak_rss_mib": status_kib(daemon.pid, "VmHWM") / 1024,
                "slow_cpu_pct": 100 * (cpu1 - cpu0) / window,
                "slow_cpu_ms_per_stream_s": 1000 * (cpu1 - cpu0) / window / size.streams,
                "slow_lag_p99_ms": 1000 * lag_quantile(m0, m1, 0.99),
                "slow_lag_p50_ms": 1000 * lag_quantile(m0, m1, 0.50),
                "slow_kb_per_stream_s": received / window / size.streams / 1000,
                "slow_sim_cpu_pct": 100 * (sim1 - sim0) / window,
            }
        finally:
            daemon.stop()
    return out


# -- 4. stall -> resume --------------------------------------------------------


@dataclass(frozen=True)
class StallSize:
    recordings: int = 24
    idle_timeout_s: float = 1.0


async def stalls(tmp: Path, size: StallSize) -> dict[str, Any]:
    """Each recording's two batches each stall once after 20 kB: 2 stalls a recording."""
    ids = [f"st{i:04d}" for i in range(size.recordings)]
    stall = {"kind": "stall", "after_bytes": 20_000, "on": [1, 3]}
    with Sim(pcm_corpus(ids, 6, faults=[stall]), tmp / "sim") as sim:
        daemon = BenchDaemon(
            tmp / "daemon",
            sim,
            streams={"concurrency": size.recordings, "idle_timeout_s": size.idle_timeout_s},
        )
        await daemon.start()
        try:
            await post_all(daemon, ids)
            await wait_completed(daemon, ids, timeout_s=60 + 10 * size.idle_timeout_s)
        finally:
            daemon.stop()
    detect, resume, total = [], [], []
    for rid in ids:
        request_at = stall_from = stalled_at = None
        for e in daemon.events:
            if e.get("recording_id") != rid:
                continue
            if e["event"] == "stream.request":
                request_at = iso_ts(e)
            elif e["event"] == "stream.stalled" and request_at is not None:
                stall_from, stalled_at = request_at, iso_ts(e)
                detect.append(stalled_at - stall_from)
            elif e["event"] == "stream.resumed" and stall_from is not None:
                assert stalled_at is not None
                resume.append(iso_ts(e) - stalled_at)
                total.append(iso_ts(e) - stall_from)
                stall_from = None
    if not total:
        raise RuntimeError("no stall was resumed")
    return {
        "stalls": float(len(total)),
        "stall_idle_timeout_s": size.idle_timeout_s,
        "stall_detect_p50_s": percentile(detect, 50),
        "stall_detect_max_s": max(detect),
        "stall_resume_p50_ms": 1000 * percentile(resume, 50),
        "stall_resume_max_ms": 1000 * max(resume),
        "stall_total_p50_s": percentile(total, 50),
        "stall_total_p95_s": percentile(total, 95),
        "stall_total_max_s": max(total),
    }


# -- profiling -----------------------------------------------------------------


def _start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.path.exists(spy):
        print("py-spy not installed (pip install py-spy): no profile", file=sys.stderr)
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [spy, "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-r", "100", "--threads"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _stop_py_spy(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(2)
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
