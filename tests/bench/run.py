"""``make bench``: what cxstream costs and how fast it goes, on this machine.

Everything runs on loopback with the simulator in its own process (so the two
cores are shared the way a real deployment shares them with nothing). Each
number is printed with what it measures; nothing here asserts a speed.

1. Throughput: N PCM recordings through the daemon (webhook → verified file)
   against curl fetching the very same stream URLs to /dev/null, one process
   per request, and aria2c fetching them with the same parallelism.
2. Memory: the daemon's peak RSS for one very long recording and for a short
   one: constant-memory streaming means they are about the same.
3. Webhook: 202 latency (the journal's fsync included) at a given concurrency.
4. Stall detection: from the last byte to ``stream.stalled``, over idle_timeout_s.
5. Verification cost: Ogg page checks and sha256 in MB/s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson

from cxstream.formats import ogg
from tests.harness import (
    ARCHIVE_SECRET,
    CLIENT_ID,
    CLIENT_SECRET,
    Daemon,
    completed,
    sign,
)

SEG_PCM = 240_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SimProcess:
    """``cxstream sim`` in its own process: a second core for the server side."""

    def __init__(self, corpus: list[dict], tmp: Path) -> None:
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.token_url = f"{self.base_url}/auth/token"
        self.archive_url = f"{self.base_url}/archive"
        self.corpus = tmp / "corpus.json"
        self.corpus.write_bytes(orjson.dumps({"recording": corpus}))
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> SimProcess:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cxstream",
            "sim",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--corpus",
            str(self.corpus),
            "--client-id",
            CLIENT_ID,
            "--client-secret",
            CLIENT_SECRET,
            "--archive-secret",
            ARCHIVE_SECRET,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"{self.base_url}/_sim/stats") as resp:
                        if resp.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("simulator did not start")

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        await self.proc.wait()

    async def token(self) -> str:
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                self.token_url,
                data={"grant_type": "client_credentials"},
                headers={"Authorization": aiohttp.encode_basic_auth(CLIENT_ID, CLIENT_SECRET)},
            ) as resp,
        ):
            return (await resp.json())["access_token"]


def _config(tmp: Path, sim: SimProcess, concurrency: int, idle: float = 15.0) -> Path:
    from tests.harness import write_config

    return write_config(
        tmp,
        sim,
        streams={"concurrency": concurrency, "idle_timeout_s": idle, "max_attempts": 10},
        archive={"url": ""},
    )


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def _archive(daemon: Daemon, http: aiohttp.ClientSession, ids: list[str]) -> float:
    t0 = time.perf_counter()
    for rid in ids:
        status, _ = await daemon.post(http, completed(rid))
        assert status == 202, status
    await daemon.wait_for(
        lambda: len(daemon.find("recording.completed")) >= len(ids), timeout_s=600
    )
    return time.perf_counter() - t0


async def bench_throughput(tmp: Path, n: int, segments: int, concurrency: int) -> None:
    tmp.mkdir(parents=True)
    ids = [f"bench-{i:03d}" for i in range(n)]
    corpus = [{"id": rid, "segments": segments, "codecs": ["pcm"]} for rid in ids]
    total = n * segments * SEG_PCM
    async with SimProcess(corpus, tmp) as sim, aiohttp.ClientSession() as http:
        (tmp / "d").mkdir(parents=True, exist_ok=True)
        daemon = Daemon(_config(tmp / "d", sim, concurrency))
        await daemon.start()
        took = await _archive(daemon, http, ids)
        rss = _peak_rss_kib(daemon.proc.pid)  # type: ignore[union-attr]
        await daemon.stop()
        print(
            f"cxstream: {n} recordings x {segments} segments PCM, {total / 1e6:.0f} MB, "
            f"concurrency {concurrency}: {took:.2f} s, {total / took / 1e6:.0f} MB/s "
            f"(verified, fsynced, published); peak RSS {rss / 1024:.0f} MiB"
        )

        token = await sim.token()
        urls = []
        for rid in ids:
            for start in range(0, segments, 3):
                offs = ",".join(str(15 * i) for i in range(start, min(start + 3, segments)))
                urls.append(
                    f"{sim.base_url}/api/v2/recordings/{rid}/stream?offsets={offs}"
                    f"&codec=pcm&maxDuration=180"
                )
        if shutil.which("curl"):
            sem = asyncio.Semaphore(concurrency)

            async def curl(url: str) -> None:
                async with sem:
                    p = await asyncio.create_subprocess_exec(
                        "curl",
                        "-sf",
                        "-o",
                        "/dev/null",
                        "-H",
                        f"Authorization: Bearer {token}",
                        url,
                    )
                    assert await p.wait() == 0

            t0 = time.perf_counter()
            await asyncio.gather(*(curl(u) for u in urls))
            took = time.perf_counter() - t0
            print(
                f"curl baseline (same URLs to /dev/null, {concurrency} at a time, no "
                f"verification, no fsync): {took:.2f} s, {total / took / 1e6:.0f} MB/s"
            )
        if shutil.which("aria2c"):
            listing = tmp / "urls.txt"
            listing.write_text("\n".join(f"{u}\n  out=f{i}" for i, u in enumerate(urls)))
            t0 = time.perf_counter()
            p = await asyncio.create_subprocess_exec(
                "aria2c",
                "-q",
                "-j",
                str(concurrency),
                "-x1",
                "-d",
                str(tmp / "aria"),
                f"--header=Authorization: Bearer {token}",
                "--allow-overwrite=true",
                "--auto-file-renaming=false",
                "-i",
                str(listing),
            )
            code = await p.wait()
            took = time.perf_counter() - t0
            print(
                f"aria2c baseline ({concurrency} at a time, to disk, no verification): "
                f"{took:.2f} s, {total / took / 1e6:.0f} MB/s (exit {code})"
            )


async def bench_memory(tmp: Path) -> None:
    for segments in (4, 400):
        corpus = [{"id": "mem", "segments": segments, "codecs": ["pcm"]}]
        d = tmp / f"mem{segments}"
        d.mkdir(parents=True)
        async with SimProcess(corpus, d) as sim, aiohttp.ClientSession() as http:
            daemon = Daemon(_config(d, sim, 1))
            await daemon.start()
            await _archive(daemon, http, ["mem"])
            rss = _peak_rss_kib(daemon.proc.pid)  # type: ignore[union-attr]
            await daemon.stop()
        print(
            f"memory: one PCM recording of {segments * SEG_PCM / 1e6:.0f} MB → "
            f"daemon peak RSS {rss / 1024:.1f} MiB"
        )


async def bench_webhook(tmp: Path, n: int, concurrency: int) -> None:
    tmp.mkdir(parents=True)
    async with SimProcess([], tmp) as sim, aiohttp.ClientSession() as http:
        daemon = Daemon(_config(tmp, sim, 1))
        await daemon.start()
        sem = asyncio.Semaphore(concurrency)
        latencies: list[float] = []

        async def post(i: int) -> None:
            body = completed(f"wh-{i:05d}")
            async with sem:
                t0 = time.perf_counter()
                async with http.post(daemon.webhook_url, data=body, headers=sign(body)) as r:
                    assert r.status == 202
                latencies.append((time.perf_counter() - t0) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(post(i) for i in range(n)))
        took = time.perf_counter() - t0
        await daemon.stop()
    q = statistics.quantiles(latencies, n=100)
    print(
        f"webhook: {n} signed webhooks, {concurrency} concurrent: {n / took:.0f}/s, "
        f"202 latency p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms (journal fsync per job)"
    )


async def bench_stall(tmp: Path, idle: float) -> None:
    tmp.mkdir(parents=True)
    corpus = [
        {
            "id": f"st{i}",
            "segments": 3,
            "codecs": ["opus"],
            "faults": [{"kind": "stall", "after_bytes": 20000, "on": [1]}],
        }
        for i in range(5)
    ]
    async with SimProcess(corpus, tmp) as sim, aiohttp.ClientSession() as http:
        daemon = Daemon(_config(tmp, sim, 5, idle=idle))
        await daemon.start()
        await _archive(daemon, http, [c["id"] for c in corpus])
        await daemon.stop()
    from datetime import datetime

    def ts(e: dict) -> float:
        return datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()

    delays = []
    for c in corpus:
        req = daemon.find("stream.request", recording_id=c["id"])[0]
        stalled = daemon.find("stream.stalled", recording_id=c["id"])[0]
        resumed = daemon.find("stream.resumed", recording_id=c["id"])[0]
        delays.append((ts(stalled) - ts(req), ts(resumed) - ts(stalled)))
    worst = max(d for d, _ in delays)
    print(
        f"stall: idle_timeout_s={idle}: request → stalled {worst:.3f} s at worst "
        f"(the 20 kB before the stall take ~1 ms), stalled → resumed "
        f"{max(r for _, r in delays) * 1000:.1f} ms at worst"
    )


def bench_verify() -> None:
    seg = (Path(ogg.__file__).parent.parent / "sim" / "audio" / "seg0.opus").read_bytes()
    chain = b"".join(ogg.reserial(seg, 1000 + i) for i in range(200))
    t0 = time.perf_counter()
    check = ogg.OggCheck()
    for i in range(0, len(chain), 65536):
        check.update(chain[i : i + 65536])
    check.finish()
    took = time.perf_counter() - t0
    data = os.urandom(64 * 1024 * 1024)
    t1 = time.perf_counter()
    hashlib.sha256(data).digest()
    sha = time.perf_counter() - t1
    print(
        f"verify: Ogg page checks {len(chain) / took / 1e6:.0f} MB/s "
        f"({check.pages} pages); sha256 {len(data) / sha / 1e6:.0f} MB/s"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench")
    parser.add_argument("--recordings", type=int, default=16)
    parser.add_argument("--segments", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cxstream-bench-"))
    try:
        bench_verify()
        await bench_throughput(tmp / "tp", args.recordings, args.segments, args.concurrency)
        await bench_memory(tmp / "mem")
        await bench_webhook(tmp / "wh", 1000, 16)
        await bench_stall(tmp / "stall", 1.0)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
