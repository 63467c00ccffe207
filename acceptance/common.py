"""Shared plumbing for the acceptance run: servers, daemon process, checks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import ClientSession, web

ROOT = Path(__file__).resolve().parent.parent
CXSTREAM = ROOT / ".venv" / "bin" / "cxstream"


class Checks:
    def __init__(self) -> None:
        self.results: list[tuple[str, bool, str]] = []

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.results.append((name, bool(ok), detail))
        print(f"{'PASS' if ok else 'FAIL'} {name}" + (f" -- {detail}" if detail and not ok else ""), flush=True)
        return bool(ok)

    @property
    def failed(self) -> int:
        return sum(1 for _, ok, _ in self.results if not ok)


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


def write_toml(path: Path, cfg: dict[str, dict[str, Any]]) -> None:
    lines = []
    for sec, kv in cfg.items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in kv.items()]
        lines.append("")
    path.write_text("\n".join(lines))


class Daemon:
    def __init__(self, cfg: Path, audit: Path, workdir: Path) -> None:
        self.cfg, self.audit, self.workdir = cfg, audit, workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.webhook = ""
        self.admin = ""

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
        self.proc = subprocess.Popen(
            [str(CXSTREAM), "run", "--config", str(self.cfg)],
            stdout=open(self.workdir / "daemon.stdout", "wb"),
            stderr=open(self.workdir / "daemon.stderr", "wb"),
            env=env,
        )

    def lines(self) -> list[dict[str, Any]]:
        if not self.audit.exists():
            return []
        out = []
        for raw in self.audit.read_text().splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"event": "__unparseable__", "raw": raw})
        return out

    async def wait_started(self, timeout: float = 30) -> None:
        def f() -> dict[str, Any] | None:
            return next((l for l in self.lines() if l.get("event") == "daemon.started"), None)
        line = await wait_for(f, timeout, "daemon.started")
        if self.proc and self.proc.poll() is not None:
            raise RuntimeError("daemon exited")
        wh = line["webhook"]
        ad = line["admin"]
        self.webhook = "http://" + (wh if isinstance(wh, str) else wh[0])
        self.admin = "http://" + (ad if isinstance(ad, str) else ad[0])

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


async def wait_for(f: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = f()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


async def post_webhook(session: ClientSession, url: str, data: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, str], str]:
    body = json.dumps({"type": "recording.completed", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "data": data})
    async with session.post(url + "/webhooks/cxone", data=body, headers={"Content-Type": "application/json", **headers}) as r:
        return r.status, dict(r.headers), await r.text()


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def find_published(storage: Path, name: str) -> list[Path]:
    return [p for p in storage.rglob(f"{name}.*") if not p.name.startswith(".") and p.suffix != ".json"
            and re.fullmatch(re.escape(name) + r"\.[a-z0-9]+", p.name)]


def outcome(lines: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    for l in lines:
        if l.get("recording_id") == name and l.get("event") in ("recording.completed", "recording.failed"):
            return l
    return None


def audit_hygiene(checks: Checks, prefix: str, lines: list[dict[str, Any]], secrets_: list[str], raw: str) -> None:
    checks.check(f"{prefix}: every audit line is a JSON object", all(l.get("event") != "__unparseable__" for l in lines),
                 str([l for l in lines if l.get("event") == "__unparseable__"][:2]))
    checks.check(f"{prefix}: every audit line has ts, level, event",
                 all({"ts", "level", "event"} <= set(l) for l in lines))
    leaked = [s[:6] + "…" for s in secrets_ if s and s in raw]
    checks.check(f"{prefix}: no secret, token or URL signature in the audit trail", not leaked, f"found {leaked}")
    q = re.findall(r"https?://[^\s\"]*\?[^\s\"]*", raw)
    checks.check(f"{prefix}: no URL query string in the audit trail", not q, f"{q[:3]}")
    try:
        import jsonschema  # type: ignore[import-untyped]
        schema = json.loads((ROOT / "docs" / "audit.schema.json").read_text())
        v = jsonschema.Draft202012Validator(schema) if "2020" in schema.get("$schema", "") else jsonschema.Draft7Validator(schema)
        bad = []
        for l in lines:
            errs = list(v.iter_errors(l))
            if errs:
                bad.append(f"{l.get('event')}: {errs[0].message[:160]}")
        checks.check(f"{prefix}: every audit line validates against docs/audit.schema.json", not bad, "; ".join(bad[:3]))
    except ImportError:
        checks.check(f"{prefix}: jsonschema available", False, "pip install jsonschema")


async def run_with_timeout(coro: Awaitable[Any], timeout: float) -> Any:
    return await asyncio.wait_for(coro, timeout)
