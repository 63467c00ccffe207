"""The processes a benchmark runs: the simulator, the daemon, and what /proc says of them.

The daemon's audit trail goes to a file, not a pipe: reading and validating
thousands of NDJSON lines as they come would cost the harness CPU on the very
cores being measured. The file is read when a scenario needs an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import (
    ARCHIVE_SECRET,
    CLIENT_ID,
    CLIENT_SECRET,
    WEBHOOK_SECRET,
    write_config,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
PCM_SEGMENT_BYTES = 240_000  # 15 s of 8 kHz 16-bit mono


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of ``pid``, all its threads, in seconds."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    # Field 2 (comm) may hold spaces; everything after its ')' splits cleanly.
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_s(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads), in seconds."""
    return sum(cpu_split(pid))


def status_kib(pid: int, key: str) -> int:
    """A ``kB`` line of /proc/<pid>/status: VmHWM (peak RSS), VmRSS (now)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class Usage:
    """What one finished child process cost, from wait4()."""

    wall_s: float
    cpu_s: float
    maxrss_kib: int
    returncode: int


def run_measured(argv: list[str], **kw: Any) -> Usage:
    """Run ``argv`` to completion: its wall time, CPU and peak RSS.

    CPU comes from wait4(), which names the child. Its ``ru_maxrss`` would also
    count the forked copy of this Python before exec, so the peak RSS is the
    new image's VmHWM instead, read until the child exits.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, **kw)
    hwm = 0
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        with contextlib.suppress(OSError, ValueError):
            hwm = max(hwm, status_kib(proc.pid, "VmHWM"))
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Usage(wall, ru.ru_utime + ru.ru_stime, hwm, proc.returncode)


class Sim:
    """``cxstream sim`` in its own process, on a port the kernel picks."""

    def __init__(self, corpus: list[dict[str, Any]], tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.corpus = tmp / "corpus.json"
        self.corpus.write_bytes(orjson.dumps({"recording": corpus}))
        self.base_url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/auth/token"

    @property
    def archive_url(self) -> str:
        return f"{self.base_url}/archive"

    def __enter__(self) -> Sim:
        argv = [sys.executable, "-m", "cxstream", "sim", "--listen", "127.0.0.1:0"]
        argv += ["--corpus", str(self.corpus), "--client-id", CLIENT_ID]
        argv += ["--client-secret", CLIENT_SECRET, "--archive-secret", ARCHIVE_SECRET]
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline().decode()
        if "base_url=" not in line:
            self.proc.kill()
            raise RuntimeError(f"simulator did not start: {line.strip()}")
        self.base_url = line.split("base_url=")[1].split()[0]
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=15)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def token(self, http: aiohttp.ClientSession) -> str:
        async with http.post(
            self.token_url,
            data={"grant_type": "client_credentials"},
            headers={"Authorization": aiohttp.encode_basic_auth(CLIENT_ID, CLIENT_SECRET)},
        ) as resp:
            return str((await resp.json())["access_token"])


class BenchDaemon:
    """``cxstream run`` as a subprocess whose audit trail is a file."""

    def __init__(
        self,
        tmp: Path,
        sim: Sim,
        env: dict[str, str] | None = None,
        python_args: tuple[str, ...] = (),
        **overrides: Any,
    ) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.python_args = python_args  # e.g. ("-m", "cProfile", "-o", "out.prof")
        self.tmp = tmp
        self.audit_path = tmp / "audit.ndjson"
        overrides.setdefault("archive", {"url": ""})
        overrides["audit"] = {"path": str(self.audit_path)}
        self.config = write_config(tmp, sim, **overrides)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.webhook_url = ""
        self.admin_url = ""
        self._offset = 0
        self.events: list[dict[str, Any]] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, timeout_s: float = 30.0) -> BenchDaemon:
        argv = [sys.executable, *self.python_args, "-m", "cxstream", "run"]
        argv += ["--config", str(self.config)]
        with open(self.tmp / "stderr.txt", "wb") as err:
            # Popen, not asyncio's: /proc and wait4 want a plain pid, and starting is quick.
            self.proc = subprocess.Popen(  # noqa: ASYNC220
                argv, stdout=subprocess.DEVNULL, stderr=err, env=self.env
            )
        started = await self.wait_for(lambda: self.find("daemon.started"), timeout_s)
        self.webhook_url = f"http://{started[0]['webhook']}/webhooks/cxone"
        self.admin_url = f"http://{started[0]['admin']}"
        return self

    def read(self) -> list[dict[str, Any]]:
        """New audit lines since the last call (a partial last line waits)."""
        with contextlib.suppress(FileNotFoundError), open(self.audit_path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
            end = data.rfind(b"\n") + 1
            self._offset += end
            self.events.extend(orjson.loads(line) for line in data[:end].splitlines() if line)
        return self.events

    def find(self, name: str, **fields: Any) -> list[dict[str, Any]]:
        self.read()
        return [
            e
            for e in self.events
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(
        self, predicate: Callable[[], Any], timeout_s: float, poll_s: float = 0.02
    ) -> Any:
        async with asyncio.timeout(timeout_s):
            while not (result := predicate()):
                if self.proc is not None and self.proc.poll() is not None:
                    err = (self.tmp / "stderr.txt").read_text()[-2000:]
                    raise RuntimeError(f"daemon exited {self.proc.returncode}: {err}")
                await asyncio.sleep(poll_s)
            return result

    async def metrics(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        """``/metrics`` as {sample name: value} ({labels} folded into the name)."""
        async with http.get(f"{self.admin_url}/metrics") as resp:
            text = await resp.text()
        out: dict[str, Any] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return out

    def stop(self, timeout_s: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def pcm_corpus(ids: list[str], segments: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"id": rid, "segments": segments, "codecs": ["pcm"], **extra} for rid in ids]


def batch_urls(base_url: str, ids: list[str], segments: int, per_request: int = 3) -> list[str]:
    """The stream URLs the daemon asks for, in the planner's shape (offsets ``0,15,30``)."""
    urls = []
    for rid in ids:
        for start in range(0, segments, per_request):
            offs = ",".join(str(15 * i) for i in range(start, min(start + per_request, segments)))
            urls.append(
                f"{base_url}/api/v2/recordings/{rid}/stream?offsets={offs}"
                f"&codec=pcm&maxDuration=180"
            )
    return urls


def iso_ts(event: dict[str, Any]) -> float:
    from datetime import datetime

    return datetime.fromisoformat(str(event["ts"]).replace("Z", "+00:00")).timestamp()


@contextlib.contextmanager
def stopping(daemon: BenchDaemon) -> Iterator[BenchDaemon]:
    try:
        yield daemon
    finally:
        daemon.stop()


__all__ = ["WEBHOOK_SECRET"]
