"""Metrics, dashboard and alert rules against a real scrape and Prometheus's own promtool.

promtool comes with Debian's ``prometheus`` package (``.ci/run`` installs it);
the tests that need it are skipped, with that reason, where it is absent.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cxstream.sim.server import SimServer
from tests.conftest import StartDaemon
from tests.harness import completed

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package prometheus)"
)
_METRIC = re.compile(r"\bcxstream_[a-z0-9_]+")


def _promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
async def scrape(
    sim: SimServer, start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> AsyncIterator[str]:
    """/metrics of a daemon that has archived one recording through a stall."""
    sim.add_recording(
        {
            "id": "rec-obs",
            "segments": 2,
            "codecs": ["opus"],
            "faults": [{"kind": "stall", "after_bytes": 1000, "on": [1]}],
        }
    )
    daemon = await start_daemon()
    assert (await daemon.post(http, completed("rec-obs")))[0] == 202
    await daemon.wait_event("recording.completed", recording_id="rec-obs")
    async with http.get(f"{daemon.admin_url}/metrics") as resp:
        assert resp.status == 200
        yield await resp.text()


def _names(text: str) -> set[str]:
    """Every name a query may use: families as typed, and the samples they expose."""
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names |= {s.name for s in family.samples}
    names |= set(re.findall(r"^# TYPE (\S+)", text, re.M))
    for line in re.findall(r"^# TYPE (\S+) histogram", text, re.M):
        names |= {f"{line}_bucket", f"{line}_sum", f"{line}_count"}
    return names


def _value(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"{name}{labels} not in the scrape")


async def test_scrape_has_the_on_call_metrics(scrape: str) -> None:
    assert _value(scrape, "cxstream_jobs_queued") == 0
    assert _value(scrape, "cxstream_jobs_oldest_queued_age_seconds") == 0
    free = {
        s.labels["path"]: s.value
        for f in text_string_to_metric_families(scrape)
        for s in f.samples
        if s.name == "cxstream_storage_free_bytes"
    }
    # storage.dir and storage.state_dir, each by its path.
    assert len(free) == 2 and all(v > 0 for v in free.values()), free
    assert _value(scrape, "cxstream_storage_paused") == 0
    assert _value(scrape, "cxstream_token_refreshes_total") >= 1
    assert _value(scrape, "cxstream_webhook_duration_seconds_count") >= 1
    # Enqueue, claim, checkpoints, completion: each a commit that wrote.
    assert _value(scrape, "cxstream_journal_commit_seconds_count") >= 4
    assert _value(scrape, "cxstream_stream_stalls_total") >= 1
    # Today's names stay.
    for name in (
        "cxstream_webhooks_total",
        "cxstream_recordings_total",
        "cxstream_stream_bytes_total",
        "cxstream_stream_requests_total",
        "cxstream_stream_retries_total",
        "cxstream_ttfb_seconds_bucket",
        "cxstream_recording_seconds_bucket",
        "cxstream_active_streams",
        "cxstream_archive_calls_total",
        "cxstream_archive_backlog",
    ):
        assert name in _names(scrape), name


@needs_promtool
async def test_scrape_passes_promtool_check_metrics(scrape: str) -> None:
    done = _promtool("check", "metrics", stdin=scrape)
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def _dashboard_queries() -> list[str]:
    doc = json.loads((CONFIG / "grafana-dashboard.json").read_text())
    exprs = []
    panels = list(doc["panels"])
    while panels:
        panel = panels.pop()
        panels.extend(panel.get("panels", []))
        exprs += [t["expr"] for t in panel.get("targets", [])]
    for var in doc["templating"]["list"]:
        if var.get("type") == "query":
            exprs.append(var["definition"].removeprefix("label_values(").split(",")[0])
    return exprs


async def test_dashboard_queries_only_metrics_the_daemon_exposes(scrape: str) -> None:
    exprs = _dashboard_queries()
    used = {name for e in exprs for name in _METRIC.findall(e)}
    # What the issue asks the dashboard to show.
    for needed in (
        "cxstream_ttfb_seconds_bucket",
        "cxstream_recording_seconds_bucket",
        "cxstream_stream_bytes_total",
        "cxstream_recordings_total",
        "cxstream_stream_stalls_total",
        "cxstream_stream_retries_total",
        "cxstream_archive_backlog",
        "cxstream_jobs_oldest_queued_age_seconds",
    ):
        assert needed in used, needed
    missing = used - _names(scrape)
    assert not missing, missing


@needs_promtool
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses PromQL in rule files: each query becomes a recording rule,
    # with Grafana's variables as Grafana would fill them.
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(_dashboard_queries()):
        expr = expr.replace("$__rate_interval", "5m").replace("$instance", ".*")
        lines += [f"      - record: dashboard:q{i}", f"        expr: {json.dumps(expr)}"]
    rules = tmp_path / "dashboard-rules.yml"
    rules.write_text("\n".join(lines) + "\n")
    done = _promtool("check", "rules", str(rules))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_alert_rules_check_and_pass_their_unit_tests() -> None:
    done = _promtool("check", "rules", str(CONFIG / "prometheus-alerts.yml"))
    assert done.returncode == 0 and "SUCCESS: 9 rules found" in done.stdout, done.stdout
    done = _promtool("test", "rules", str(CONFIG / "prometheus-alerts.test.yml"))
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


async def test_alert_rules_only_use_metrics_the_daemon_exposes(scrape: str) -> None:
    text = (CONFIG / "prometheus-alerts.yml").read_text()
    exprs = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    used = set(_METRIC.findall(exprs))
    assert used and not used - _names(scrape), used - _names(scrape)
