"""The webhook ingress in process: the daemon's own app, a real journal, no workers.

``build_app`` from the composition root, with a real SQLite journal in a
temporary directory, the real audit pipeline writing to memory
(tests/trail.py, every line schema-checked as it lands), and a real
loopback listener (aiohttp's TestServer on port 0). Unless a simulator is
given, the worker pool is built and never started, so a job's journal state
is the test's to move (``claim``, ``complete``, ``fail``) and nothing is
ever fetched.
"""

from __future__ import annotations

import base64
import re
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from cxstream.audit import audit_to
from cxstream.config import load
from cxstream.daemon import _workers_ctx, build_app, build_pool
from cxstream.journal import SqliteJournal
from cxstream.keys import JOURNAL, POOL
from cxstream.metrics import Metrics
from tests.harness import WEBHOOK_SECRET, sign_raw, write_config
from tests.trail import Trail

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


JSON = {"Content-Type": "application/json"}
# What a 401 challenges with, per mode (a signature has no challenge scheme).
CHALLENGE = {
    "standard-webhooks": None,
    "bearer": 'Bearer realm="cxstream"',
    "basic": 'Basic realm="cxstream"',
}
_WEBHOOK_ID = re.compile(r"[\x21-\x7e]{1,256}")


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


class DaemonServer(TestServer):
    """aiohttp's TestServer, but with the daemon's runner settings.

    TestServer cancels a handler whose client goes away; ``serve()`` keeps
    aiohttp's default (no cancellation), so a hang-up mid-body reaches the
    handler as a read error and is answered and audited (400). The ingress
    under test must behave as the daemon's does.
    """

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        kwargs["handler_cancellation"] = False
        return web.AppRunner(self.app, access_log=None, **kwargs)


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
    trail: Trail
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
        return [x for x in self.trail.lines if event is None or x["event"] == event]

    async def wait_lines(self, event: str, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """The ``event`` lines, once there is one (the handler may still be running)."""
        return await self.trail.wait_for(lambda: self.lines(event), timeout_s)  # type: ignore[no-any-return]

    def jobs(self) -> list[dict[str, Any]]:
        """The journal's job rows, read beside the daemon as an operator would."""
        db = sqlite3.connect(f"file:{self.journal.path}?mode=ro", uri=True)
        db.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in db.execute("SELECT * FROM jobs ORDER BY id")]
        finally:
            db.close()

    def assert_clean_trail(self, also: Sequence[str] = ()) -> None:
        """Every line valid against the published schema; no credential anywhere."""
        self.trail.assert_clean([*CREDENTIALS, *also])


async def expect_rejected(
    ing: Ingress, status: int, body: Any, headers: Mapping[str, str], **kw: Any
) -> dict[str, Any]:
    """The answer, its audit line, and nothing journaled; returns the line."""
    before = len(ing.lines("webhook.rejected"))
    code, doc, answer_headers = await ing.post(body, headers, **kw)  # type: ignore[arg-type]
    assert code == status, doc
    assert isinstance(doc, dict) and isinstance(doc["error"], str) and doc["error"], doc
    text = orjson.dumps(doc).decode() + str(answer_headers)
    for secret in CREDENTIALS:
        assert secret not in text
    (line,) = ing.lines("webhook.rejected")[before:]
    assert line["status"] == status and line["level"] == "warning"
    assert line["reason"] == doc.get("reason", doc["error"])
    assert line["auth"] == ing.mode
    assert line["peer"] == "127.0.0.1" and line["remote"] == "127.0.0.1"
    wid = headers.get("webhook-id")
    assert line["webhook_id"] == (wid if wid and _WEBHOOK_ID.fullmatch(wid) else None)
    # A signature, good or bad, is never written down.
    signature = headers.get("webhook-signature", "")
    for part in signature.replace(",", " ").split():
        if len(part) > 8:
            assert part.encode() not in ing.trail.raw, "a signature reached the trail"
    assert ing.jobs() == []
    if status == 503:
        assert int(answer_headers["Retry-After"]) > 0
    if status == 401:
        assert answer_headers.get("WWW-Authenticate") == CHALLENGE[ing.mode]
    else:
        assert "WWW-Authenticate" not in answer_headers
    return line


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
    streams: dict[str, Any] | None = None,
) -> AsyncIterator[Ingress]:
    """With ``cxone`` (a simulator), the real workers run against it; else none run."""
    tmp.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, dict[str, Any]] = {"webhook": {**webhook_keys(mode), **(webhook or {})}}
    if source is not None:
        overrides["source"] = source
    if streams is not None:
        overrides["streams"] = streams
    for name, values in (sections or {}).items():
        overrides.setdefault(name, {}).update(values)
    cfg = load(write_config(tmp, NOWHERE if cxone is None else cxone, **overrides), {})
    cfg.storage.dir.mkdir(parents=True, exist_ok=True)
    trail = Trail()
    app = build_app(cfg, audit_to(trail, cfg.secrets()), Metrics())
    if cxone is None:
        app.cleanup_ctx[app.cleanup_ctx.index(_workers_ctx)] = _idle_pool
    kw: dict[str, Any] = {}
    if socket_factory is not None:
        kw = {"host": "::ffff:127.0.0.1", "socket_factory": socket_factory}
    async with TestClient(DaemonServer(app, **kw)) as client:
        ingress = Ingress(app=app, client=client, trail=trail, mode=mode)
        yield ingress
    # Every test that gets here has its whole trail checked, whatever it did,
    # for the tokens a simulator issued too.
    ingress.assert_clean_trail(getattr(getattr(cxone, "state", None), "issued_tokens", ()))
