"""``make bench`` at toy size, so the harness cannot rot between real runs.

Every scenario runs once (2 recordings, 5 slow streams, 200 webhooks, 4 stalls)
through the same code ``make bench`` uses; the numbers are not judged, only
that each was measured and the table and results file came out.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import orjson
import pytest

from tests.bench import run

TINY = [
    "--runs", "1", "--recordings", "2", "--segments", "4", "--webhooks", "200",
    "--senders", "16", "--slow-streams", "5", "--slow-seconds", "1", "--slow-window", "0.5",
    "--stall-recordings", "2", "--idle-timeout", "0.3", "--quiet",
]  # fmt: skip


@pytest.mark.timeout(60)
def test_every_scenario_measures_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results.json"
    assert run.main([*TINY, "--out", str(out)]) == 0
    result = orjson.loads(out.read_bytes())
    med = result["median"]
    assert set(med) == set(run.ALL)
    archive = med["archive"]
    assert archive["mb"] == pytest.approx(2 * 4 * 0.24)
    assert archive["daemon_wall_s"] > 0 and archive["daemon_cpu_s"] > 0
    assert archive["daemon_peak_rss_mib"] > 10
    for tool in ("curl", "aria2c"):
        if shutil.which(tool):
            assert archive[f"{tool}_wall_s"] > 0 and f"wall_vs_{tool}" in archive
    assert med["ingest"]["ingest_accepted"] == 200 and med["ingest"]["ingest_not_202"] == 0
    assert med["ingest"]["ingest_p99_ms"] >= med["ingest"]["ingest_p50_ms"] > 0
    assert med["loaded"]["ingest_sent"] > 0
    assert med["slow"]["slow_streams"] == 5 and med["slow"]["slow_rss_mib"] > 10
    assert not math.isnan(med["slow"]["slow_lag_p99_ms"])
    assert med["stalls"]["stalls"] == 4
    assert med["stalls"]["stall_detect_p50_s"] >= 0.3
    assert {t["verdict"] for t in result["targets"]} <= {"pass", "FAIL", "n/a"}
    assert result["machine"]["nproc"] >= 1
    table = capsys.readouterr().out
    for heading in ("1. Archive", "2. Slow streams", "3. Webhook ingest", "4. Stall", "5. Cost"):
        assert heading in table
