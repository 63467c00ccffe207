"""The webhook ingress in process: the daemon's own app, a real journal, no workers.

``build_app`` from the composition root, with a real SQLite journal in a
temporary directory, the real audit pipeline writing to a file, and a real
loopback listener (aiohttp's TestServer on port 0). Unless a simulator is
given, the worker pool is built and never started, so a job's journal state
is the test's to move (``claim``, ``complete``, ``fail``) and nothing is
ever fetched.
"""

from __future__ import annotations

import base64
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cxstream.audit.log import close_audit, open_audit
from cxstream.config import load, secret_values
from cxstream.daemon import _workers_ctx, build_app, build_pool
from cxstream.journal import SqliteJournal
from cxstream.keys import JOURNAL, POOL
from cxstream.metrics import Metrics
from tests.harness import WEBHOOK_SECRET, sign_raw, write_config
from tests.schema import audit_validator

MODES = ("standard-webhooks", "bearer", "basic")
TOKEN = "bearer-token-for-tests-0123456789abcdef"
USER = "studio-script"
PASSWORD = "basic-password-for-tests-7f3a9c"
BASIC = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
# Every credential a trail or an answer must never show.
CREDENTIALS = (
    TOKEN,
    PASSWORD,
    BASIC,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET.removeprefix("whsec_"),
)
# Nothing listens on port 9: a worker would fail at once, but none ever runs.
NOWHERE = SimpleNamespace(
    base_url="http://127.0.0.1:9/api",
    token_url="http://127.0.0.1:9/auth/token",
    archive_url="",
)


def webhook_keys(mode: str) -> dict[str, Any]:
    """The [webhook] keys of one mode (write_config always adds the whsec secret)."""
    keys: dict[str, Any] = {"auth": mode}
    if mode == "bearer":
        keys["token"] = TOKEN
    elif mode == "basic":
        keys |= {"user": USER, "password": PASSWORD}
    return keys


def credentials(mode: str, body: bytes, **sign_kw: Any) -> dict[str, str]:
    """Headers that authenticate ``body`` in ``mode``, with the JSON content type."""
    if mode == "standard-webhooks":
        return sign_raw(body, **sign_kw)
    scheme = f"Bearer {TOKEN}" if mode == "bearer" else f"Basic {BASIC}"
    return {"Authorization": scheme, "Content-Type": "application/json"}


async def _idle_pool(app: web.Application) -> AsyncIterator[None]:
    """The real pool and runner, built as the daemon builds them, never started."""
    app[POOL] = build_pool(app)
    yield


def mapped_loopback(host: str, port: int, family: socket.AddressFamily) -> socket.socket:
    """A dual-stack listener on ::ffff:127.0.0.1 only: IPv4 peers arrive IPv4-mapped."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.bind(("::ffff:127.0.0.1", port))
    return sock


@dataclass
class Ingress:
    app: web.Application
    client: TestClient[web.Request, web.Application]
    audit_path: Path
    mode: str

    @property
    def journal(self) -> SqliteJournal:
        journal = self.app[JOURNAL]
        assert isinstance(journal, SqliteJournal)
        return journal

    async def post(
        self, body: bytes, headers: dict[str, str], **kw: Any
    ) -> tuple[int, Any, dict[str, str]]:
        async with self.client.post("/webhooks/cxone", data=body, headers=headers, **kw) as resp:
            raw = await resp.read()
            doc = orjson.loads(raw) if resp.content_type == "application/json" else raw
            return resp.status, doc, dict(resp.headers)

    def lines(self, event: str | None = None) -> list[dict[str, Any]]:
        out = [orjson.loads(x) for x in self.audit_path.read_bytes().splitlines()]
        return [x for x in out if event is None or x["event"] == event]

    def jobs(self) -> list[dict[str, Any]]:
        """The journal's job rows, read beside the daemon as an operator would."""
        db = sqlite3.connect(f"file:{self.journal.path}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute("SELECT * FROM jobs ORDER BY id")]
        finally:
            db.close()

    def assert_clean_trail(self) -> None:
        """Every line valid against the published schema; no credential anywhere."""
        raw = self.audit_path.read_text()
        for secret in CREDENTIALS:
            assert secret not in raw, "a credential reached the audit trail"
        validator = audit_validator()
        for line in self.lines():
            assert not list(validator.iter_errors(line)), line


@asynccontextmanager
async def ingress(
    tmp: Path,
    mode: str = "standard-webhooks",
    *,
    webhook: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    socket_factory: Callable[[str, int, socket.AddressFamily], socket.socket] | None = None,
    cxone: Any = None,
    sections: dict[str, dict[str, Any]] | None = None,
) -> AsyncIterator[Ingress]:
    """With ``cxone`` (a simulator), the real workers run against it; else none run."""
    tmp.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, dict[str, Any]] = {"webhook": {**webhook_keys(mode), **(webhook or {})}}
    if source is not None:
        overrides["source"] = source
    for name, values in (sections or {}).items():
        overrides.setdefault(name, {}).update(values)
    cfg = load(write_config(tmp, NOWHERE if cxone is None else cxone, **overrides), {})
    cfg.storage.dir.mkdir(parents=True, exist_ok=True)
    audit_path = tmp / "audit.ndjson"
    audit, owned = open_audit(str(audit_path), secret_values(cfg))
    app = build_app(cfg, audit, Metrics())
    if cxone is None:
        app.cleanup_ctx[app.cleanup_ctx.index(_workers_ctx)] = _idle_pool
    kw: dict[str, Any] = {}
    if socket_factory is not None:
        kw = {"host": "::ffff:127.0.0.1", "socket_factory": socket_factory}
    try:
        async with TestClient(TestServer(app, **kw)) as client:
            ingress = Ingress(app=app, client=client, audit_path=audit_path, mode=mode)
            yield ingress
        # Every test that gets here has its whole trail checked, whatever it did.
        ingress.assert_clean_trail()
    finally:
        close_audit(owned)
