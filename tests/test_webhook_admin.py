"""Contract §7 beside the webhook: /healthz, /readyz and /metrics agree with what was answered.

In process: the daemon's app with its workers against the simulator
(tests/ingress.py), and the admin app built from it as ``serve()`` builds it.
Each test makes the traffic it then measures.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from cxstream.admin import build_admin_app
from cxstream.audit import audit_to
from cxstream.config import load
from cxstream.journal import JournalError
from cxstream.keys import CONFIG, GUARD, JOURNAL, LIFECYCLE, METRICS, Lifecycle
from cxstream.metrics import Metrics
from cxstream.sim.server import SimServer
from cxstream.sink.space import DiskGuard
from tests.harness import completed, sign_raw, write_config
from tests.ingress import NOWHERE, ingress
from tests.trail import Trail


def samples(text: str, family: str, sample: str, label: str) -> dict[str, float]:
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return {s.labels[label]: s.value for s in families[family].samples if s.name == sample}


async def test_metrics_count_every_answer_and_readyz_is_ready(
    tmp_path: Path, sim: SimServer
) -> None:
    sim.add_recording({"id": "rec-ok", "segments": 1, "codecs": ["opus"]})
    good = completed("rec-ok")
    big = good[:-1] + b" " * (64 * 1024) + b"}"
    ignored = orjson.dumps({"type": "recording.deleted"})
    # Each request and the outcome the daemon counts it under.
    traffic: list[tuple[bytes, dict[str, str], str]] = [
        (good, sign_raw(good), "accepted"),
        (good, sign_raw(good), "duplicate"),
        (ignored, sign_raw(ignored), "ignored"),
        (b"{nope", sign_raw(b"{nope"), "rejected_400"),
        (good, sign_raw(completed("rec-other")), "rejected_401"),
        (big, sign_raw(big), "rejected_413"),
        (good, {**sign_raw(good), "Content-Type": "text/plain"}, "rejected_415"),
    ]
    async with ingress(tmp_path, cxone=sim) as ing:
        for body, headers, _ in traffic:
            await ing.post(body, headers)
        await ing.wait_lines("recording.completed")
        # serve() sets this once its sockets listen; the test server's are.
        ing.app[LIFECYCLE].listening = True
        async with TestClient(TestServer(build_admin_app(ing.app))) as admin:
            assert (await admin.get("/healthz")).status == 200
            ready = await admin.get("/readyz")
            assert ready.status == 200, await ready.text()
            assert (await ready.json())["status"] == "ready"
            resp = await admin.get("/metrics")
            assert (resp.status, resp.content_type) == (200, "text/plain")
            text = await resp.text()
    webhooks = samples(text, "cxstream_webhooks", "cxstream_webhooks_total", "outcome")
    assert webhooks == {k: float(v) for k, v in Counter(o for *_, o in traffic).items()}
    recordings = samples(text, "cxstream_recordings", "cxstream_recordings_total", "outcome")
    assert recordings.get("completed") == 1.0
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["cxstream_jobs_queued"].samples[0].value == 0


class _LockedJournal:
    """A journal whose every transaction fails, as SQLite's does when it is locked."""

    async def counts(self) -> dict[str, int]:
        raise JournalError("OperationalError: database is locked")

    async def queued(self) -> tuple[int, float | None]:
        raise JournalError("OperationalError: database is locked")

    async def backlog(self) -> tuple[int, float | None]:
        raise JournalError("OperationalError: database is locked")

    async def healthy(self) -> bool:
        return False


async def test_metrics_survive_a_journal_that_cannot_answer(tmp_path: Path) -> None:
    # A stand-in journal: holding the real one's lock costs 5 s per request.
    config = load(write_config(tmp_path, NOWHERE), {})
    config.storage.dir.mkdir(parents=True)
    main = web.Application()
    main[CONFIG] = config
    main[JOURNAL] = _LockedJournal()  # type: ignore[misc]
    main[LIFECYCLE] = Lifecycle(listening=True)
    main[METRICS] = metrics = Metrics()
    main[GUARD] = DiskGuard((config.storage.dir,), 0, audit_to(Trail()), metrics)
    metrics.webhooks.labels(outcome="accepted").inc()
    async with TestClient(TestServer(build_admin_app(main))) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        webhooks: dict[str, Any] = samples(
            await resp.text(), "cxstream_webhooks", "cxstream_webhooks_total", "outcome"
        )
        assert webhooks == {"accepted": 1.0}
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["checks"] == {
            "listening": True,
            "journal": False,
            "storage": True,
            "disk_space": True,
        }
        assert (await client.get("/healthz")).status == 200
