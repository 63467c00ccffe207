"""Test harness: the real daemon as a subprocess, its NDJSON read as it comes.

Nothing here mocks the daemon: it is started with ``python -m cxstream run``
on loopback ports chosen by the kernel (port 0, read back from the
``daemon.started`` audit line), talks to a real simulator, writes real files.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import os
import signal
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from standardwebhooks.webhooks import Webhook

from tests.schema import audit_validator

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"webhook-secret-for-tests-0123456").decode()
ARCHIVE_SECRET = "whsec_" + base64.b64encode(b"archive-secret-for-tests-654321").decode()
CLIENT_ID = "cxstream-test"
CLIENT_SECRET = "client-secret-never-logged-42"

Event = dict[str, Any]


def sign(
    body: bytes,
    secret: str = WEBHOOK_SECRET,
    webhook_id: str | None = None,
    when: datetime | None = None,
) -> dict[str, str]:
    wid = webhook_id or f"msg_{uuid.uuid4().hex}"
    when = when or datetime.now(UTC)
    return {
        "webhook-id": wid,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(wid, when, body.decode()),
        "Content-Type": "application/json",
    }


async def raw_post(
    url: str, headers: dict[str, str], first_bytes: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A POST written by hand (headers, then only ``first_bytes`` of the body), for
    what no HTTP client will send: stalls, lies about length, broken framing."""
    host, rest = url.split("/", 3)[2], "/" + url.split("/", 3)[3]
    name, port = host.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(name, int(port))
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"POST {rest} HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode() + first_bytes)
    await writer.drain()
    return reader, writer


def sign_raw(
    body: bytes,
    secret: str = WEBHOOK_SECRET,
    webhook_id: str | None = None,
    when: datetime | None = None,
) -> dict[str, str]:
    """Standard Webhooks over the raw bytes (standardwebhooks only signs str)."""
    wid = webhook_id or f"msg_{uuid.uuid4().hex}"
    ts = str(int((when or datetime.now(UTC)).timestamp()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": wid,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "Content-Type": "application/json",
    }


def completed(recording_id: str, **data: Any) -> bytes:
    return orjson.dumps(
        {
            "type": "recording.completed",
            "timestamp": "2026-11-24T10:00:00Z",
            "data": {"recordingId": recording_id, **data},
        }
    )


def write_config(tmp: Path, sim: Any, **overrides: dict[str, Any]) -> Path:
    sections: dict[str, dict[str, Any]] = {
        # A short drain: most tests stop a daemon or three; the drain has its own test.
        "webhook": {"listen": "127.0.0.1:0", "secret": WEBHOOK_SECRET, "drain_grace_s": 0.1},
        "cxone": {
            "base_url": sim.base_url,
            "token_url": sim.token_url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "codecs": ["opus", "pcm"],
        },
        "streams": {
            "concurrency": 4,
            "idle_timeout_s": 1.0,
            "max_attempts": 6,
            "backoff_base_s": 0.05,
            "backoff_cap_s": 0.5,
        },
        "storage": {"dir": str(tmp / "recordings"), "state_dir": str(tmp / "state")},
        "archive": {
            "url": sim.archive_url,
            "secret": ARCHIVE_SECRET,
            "backoff_base_s": 0.05,
            "backoff_cap_s": 0.3,
        },
        "audit": {"path": "-"},
        "admin": {"listen": "127.0.0.1:0"},
    }
    for name, values in overrides.items():
        sections.setdefault(name, {}).update(values)
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            lines.append(f"{key} = {orjson.dumps(value).decode()}")
    path = tmp / "cxstream.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Daemon:
    """``cxstream run`` in a subprocess; ``events`` fills as NDJSON lines arrive."""

    # Every process started, so a failing test cannot leave one running
    # (conftest's autouse fixture reaps them).
    started: list[asyncio.subprocess.Process] = []

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.env = env or {}
        self.events: list[Event] = []
        self.raw_lines: list[bytes] = []
        # Every line any test's daemon writes is held to the published schema.
        self.schema_errors: list[str] = []
        self._validator = audit_validator()
        self.stderr = b""
        self.proc: asyncio.subprocess.Process | None = None
        self.webhook_url = ""
        self.admin_url = ""
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    async def start(self, timeout_s: float = 20.0) -> Daemon:
        self.events.clear()
        env = {**os.environ, **self.env}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cxstream",
            "run",
            "--config",
            str(self.config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        Daemon.started.append(self.proc)
        self._reader = asyncio.create_task(self._read())
        self._err_reader = asyncio.create_task(self._read_err())
        started = await self.wait_event("daemon.started", timeout_s=timeout_s)
        self.webhook_url = f"http://{started['webhook']}/webhooks/cxone"
        self.admin_url = f"http://{started['admin']}"
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.raw_lines.append(line)
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                event = {"event": "__not_json__", "line": line.decode(errors="replace")}
                self.schema_errors.append(f"not JSON: {line[:200]!r}")
            else:
                for error in self._validator.iter_errors(event):
                    self.schema_errors.append(f"{error.message} in {line[:300]!r}")
            async with self._changed:
                self.events.append(event)
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def _read_err(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.stderr += line

    def find(self, name: str, **fields: Any) -> list[Event]:
        return [
            e
            for e in self.events
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(self, predicate: Callable[[], Any], timeout_s: float = 30.0) -> Any:
        async with asyncio.timeout(timeout_s), self._changed:
            while not (result := predicate()):
                if (
                    self.proc is not None
                    and self.proc.returncode is not None
                    and self._reader is not None
                    and self._reader.done()
                ):
                    raise AssertionError(
                        f"daemon exited {self.proc.returncode}: {self.stderr.decode()[-2000:]}"
                    )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await self._changed.wait()
            return result

    async def wait_event(self, name: str, timeout_s: float = 30.0, **fields: Any) -> Event:
        found = await self.wait_for(lambda: self.find(name, **fields), timeout_s)
        return found[0]

    async def post(
        self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with session.post(
            self.webhook_url, data=body, headers=sign(body) if headers is None else headers
        ) as resp:
            text = await resp.read()
            try:
                return resp.status, orjson.loads(text)
            except orjson.JSONDecodeError:
                return resp.status, text

    async def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def stop(self, timeout_s: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout_s):
            code = await self.proc.wait()
            if self._reader is not None:
                await self._reader
        self.assert_schema()
        return code

    def assert_schema(self) -> None:
        assert not self.schema_errors, "\n".join(self.schema_errors[:10])

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        await self.proc.wait()
        if self._reader is not None:
            await self._reader
        self.assert_schema()
