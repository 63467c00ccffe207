"""``cxstream audit-report``: exact hourly numbers from a hand-built trail, via the real CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cxstream.report import percentile, summarise
from tests.test_audit_schema import audit_validator

SHA = "fb7468e2ea2056ce6e49edc6ffe4b1dd709faeaa3818c37fda443101c83115a2"
# Lines the report must count as skipped, each for a different reason.
GARBAGE = [
    b"not json at all",
    b'{"event":"recording.completed","recording_id":"rec-x","bytes":1}',  # no ts
    b'{"ts":"2026-11-24T10:05:00.000001Z","level":"info"}',  # no event
    b'{"ts":"yesterday","level":"info","event":"recording.failed"}',
    b'{"ts":"2026-11-24T10:05:00","level":"info","event":"recording.failed"}',  # no offset
    b"[1, 2, 3]",
    b'{"ts":"2026-11-24T10:59:59.999999Z","level":"info","event":"recording.compl',  # cut off
]


def _line(ts: str, level: str, event: str, **fields: Any) -> bytes:
    return orjson.dumps({"ts": ts, "level": level, "event": event, **fields})


def _completed(ts: str, rid: str, size: int, ttfb: float | None, attempts: int = 1) -> bytes:
    return _line(
        ts,
        "info",
        "recording.completed",
        recording_id=rid,
        bytes=size,
        sha256=SHA,
        ttfb_ms=ttfb,
        duration_ms=812.4,
        attempts=attempts,
        path=f"/srv/recordings/2026/11/24/{rid}.opus",
        codec="opus",
    )


def _trail() -> list[bytes]:
    """Two busy hours of a realistic trail, with noise the report must not count."""
    lines = [
        _line(
            "2026-11-24T09:59:59.999999Z",
            "info",
            "daemon.started",
            version="0.1.0",
            webhook="0.0.0.0:8080",
            admin="127.0.0.1:9090",
            concurrency=4,
        )
    ]
    # 10:00: 20 completions, TTFB 1.5, 3.0, ... 30.0 ms and 1000 .. 20000 bytes.
    for k in range(1, 21):
        rid = f"rec-{k:04d}"
        ts = f"2026-11-24T10:{2 * k:02d}:00.{k:06d}Z"
        lines.append(
            _line(
                ts,
                "info",
                "webhook.accepted",
                webhook_id=f"msg_{k}",
                recording_id=rid,
                contact_id=None,
                codec=None,
                offsets=None,
                journal_ms=1.2,
                scope="recording",
                original_name=None,
                auth="standard-webhooks",
                peer="10.1.2.3",
            )
        )
        lines.append(_completed(ts.replace(":00.", ":30."), rid, 1000 * k, 1.5 * k))
    for k in range(5):
        lines.append(
            _line(
                f"2026-11-24T10:5{k}:00.000100Z",
                "error",
                "recording.failed",
                recording_id=f"rec-missing-{k}",
                error="recording_not_found",
                status=404,
                attempts=1,
            )
        )
    for k in range(2):
        lines.append(
            _line(
                f"2026-11-24T10:1{k}:00.5Z",
                "warning",
                "stream.stalled",
                recording_id="rec-0005",
                offsets="0,15,30",
                offset=30000,
                idle_s=15.0,
            )
        )
    for k in range(3):
        lines.append(
            _line(
                f"2026-11-24T10:2{k}:00.5Z",
                "warning",
                "stream.retry",
                recording_id="rec-0005",
                status=None if k < 2 else 503,
                error="stalled" if k < 2 else "http_503",
                delay_s=0.0,
                attempt=k + 2,
            )
        )
    lines.append(b"")  # a blank line is neither counted nor skipped
    # 11:00: a run that streamed nothing (ttfb null), a ts without a fraction, one retry.
    lines.append(_completed("2026-11-24T11:00:00Z", "rec-0100", 500, None, attempts=2))
    lines.append(_completed("2026-11-24T11:30:00.250000Z", "rec-0101", 1500, 7.5))
    lines.append(
        _line(
            "2026-11-24T11:59:59.999999Z",
            "warning",
            "stream.retry",
            recording_id="rec-0101",
            status=429,
            error="rate_limited",
            delay_s=1.0,
            attempt=2,
        )
    )
    lines[12:12] = GARBAGE  # in the middle: skipping must not stop the count
    return lines


HOUR_10 = {
    "hour": "2026-11-24T10:00:00Z",
    "completed": 20,
    "failed": 5,
    "success_rate": 0.8,
    "ttfb_p50_ms": 15.0,
    "ttfb_p95_ms": 28.5,
    "ttfb_p99_ms": 30.0,
    "bytes": 210000,
    "stalls": 2,
    "retries": 3,
}
HOUR_11 = {
    "hour": "2026-11-24T11:00:00Z",
    "completed": 2,
    "failed": 0,
    "success_rate": 1.0,
    "ttfb_p50_ms": 7.5,
    "ttfb_p95_ms": 7.5,
    "ttfb_p99_ms": 7.5,
    "bytes": 2000,
    "stalls": 0,
    "retries": 1,
}
EXPECTED = {
    "hours": [
        # The daemon.started line alone makes 09:00 an hour with activity.
        {
            "hour": "2026-11-24T09:00:00Z",
            "completed": 0,
            "failed": 0,
            "success_rate": None,
            "ttfb_p50_ms": None,
            "ttfb_p95_ms": None,
            "ttfb_p99_ms": None,
            "bytes": 0,
            "stalls": 0,
            "retries": 0,
        },
        HOUR_10,
        HOUR_11,
    ],
    # 21 samples: 1.5 .. 30.0 and 7.5; ranks 11, 20 and 21.
    "total": {
        "completed": 22,
        "failed": 5,
        "success_rate": 22 / 27,
        "ttfb_p50_ms": 15.0,
        "ttfb_p95_ms": 28.5,
        "ttfb_p99_ms": 30.0,
        "bytes": 212000,
        "stalls": 2,
        "retries": 4,
    },
    "skipped": len(GARBAGE),
}


@pytest.fixture
def trail(tmp_path: Path) -> Path:
    path = tmp_path / "audit.ndjson"
    path.write_bytes(b"\n".join(_trail()) + b"\n")
    return path


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cxstream", "audit-report", *args],
        input=stdin,
        capture_output=True,
        timeout=30,
        check=False,
    )


def test_the_fixture_lines_are_real_audit_lines() -> None:
    validator = audit_validator()
    for raw in _trail():
        if raw and raw not in GARBAGE:
            assert not list(validator.iter_errors(orjson.loads(raw))), raw


def test_summarise_counts_every_hour_exactly() -> None:
    report = summarise(iter(_trail()))
    assert report.as_dict() == EXPECTED
    assert report.first_skipped == 13


def test_json_output_of_the_cli(trail: Path) -> None:
    done = _cli(str(trail), "--json")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout) == EXPECTED
    errors = done.stderr.decode().splitlines()
    assert errors == [
        "cxstream audit-report: skipped 7 line(s) without JSON, ts or event (first: line 13)"
    ]


def test_table_output_of_the_cli_is_aligned_and_has_the_numbers(trail: Path) -> None:
    done = _cli(str(trail))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert len({len(line) for line in lines}) == 1, "columns are not aligned"
    assert [line.split() for line in lines] == [
        [
            "hour",
            "completed",
            "failed",
            "success_rate",
            "ttfb_p50_ms",
            "ttfb_p95_ms",
            "ttfb_p99_ms",
            "bytes",
            "stalls",
            "retries",
        ],
        ["2026-11-24T09:00:00Z", "0", "0", "-", "-", "-", "-", "0", "0", "0"],
        ["2026-11-24T10:00:00Z", "20", "5", "80.0%", "15.0", "28.5", "30.0", "210000", "2", "3"],
        ["2026-11-24T11:00:00Z", "2", "0", "100.0%", "7.5", "7.5", "7.5", "2000", "0", "1"],
        ["total", "22", "5", "81.5%", "15.0", "28.5", "30.0", "212000", "2", "4"],
    ]
    assert len(done.stderr.decode().splitlines()) == 1


def test_stdin_is_read_for_a_dash(trail: Path) -> None:
    done = _cli("-", "--json", stdin=trail.read_bytes())
    assert done.returncode == 0
    assert orjson.loads(done.stdout) == EXPECTED


def test_a_clean_trail_prints_nothing_on_stderr() -> None:
    clean = [raw for raw in _trail() if raw not in GARBAGE]
    done = _cli("-", "--json", stdin=b"\n".join(clean))
    assert done.returncode == 0 and done.stderr == b""
    assert orjson.loads(done.stdout) == {**EXPECTED, "skipped": 0}


def test_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.ndjson"
    done = _cli(str(missing), "--json")
    assert done.returncode == 2
    assert done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        f"cxstream audit-report: cannot open {missing}: No such file or directory"
    ]


def test_a_reader_that_goes_away_is_not_a_traceback(trail: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cxstream", "audit-report", str(trail)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `| head -0`: every write now meets a closed pipe
    errors = proc.stderr.read().decode()
    assert proc.wait(timeout=30) == 1
    assert "Traceback" not in errors
    assert len(errors.splitlines()) == 1  # only the skipped-lines note


def test_an_empty_trail_has_a_zero_total() -> None:
    assert summarise(iter([])).as_dict() == {
        "hours": [],
        "total": {
            "completed": 0,
            "failed": 0,
            "success_rate": None,
            "ttfb_p50_ms": None,
            "ttfb_p95_ms": None,
            "ttfb_p99_ms": None,
            "bytes": 0,
            "stalls": 0,
            "retries": 0,
        },
        "skipped": 0,
    }


def test_the_file_is_consumed_as_a_stream() -> None:
    """A generator is enough: the report never needs the lines again, nor all at once."""
    seen = 0

    def lines() -> Iterator[bytes]:
        nonlocal seen
        for k in range(5000):
            seen += 1
            yield _completed(f"2026-11-24T{k % 24:02d}:00:00Z", f"rec-{k}", 10, None)

    report = summarise(lines())
    assert seen == 5000
    assert len(report.hours) == 24
    assert report.total().completed == 5000 and report.total().bytes == 50000


def test_a_ts_with_an_offset_is_filed_under_its_utc_hour() -> None:
    # The daemon writes Z, but a trail re-emitted by a shipper may not.
    lines = [
        _completed("2026-11-24T12:30:00.25+01:00", "rec-1", 1, 1.0),
        _completed("2026-11-24T06:59:59-04:00", "rec-2", 2, 2.0),
    ]
    hours = summarise(iter(lines)).as_dict()["hours"]
    assert [(h["hour"], h["bytes"]) for h in hours] == [
        ("2026-11-24T10:00:00Z", 2),
        ("2026-11-24T11:00:00Z", 1),
    ]


def test_nonsense_values_are_counted_but_not_summed() -> None:
    lines = [
        _line("2026-11-24T10:00:00Z", "info", "recording.completed", bytes="12", ttfb_ms=True),
        _line("2026-11-24T10:00:00Z", "info", "recording.completed", bytes=-5, ttfb_ms=-1.0),
        _line("2026-11-24T10:00:00Z", "info", "recording.completed"),
        _line("0001-01-01T00:00:00+14:00", "info", "recording.completed"),
    ]
    report = summarise(iter(lines))
    row = report.as_dict()["total"]
    assert (row["completed"], row["bytes"], row["ttfb_p50_ms"]) == (3, 0, None)
    assert report.skipped == 1


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        ([], (None, None, None)),
        ([42.0], (42.0, 42.0, 42.0)),
        ([15.0, 20.0, 35.0, 40.0, 50.0], (35.0, 50.0, 50.0)),
        ([float(k) for k in range(1, 101)], (50.0, 95.0, 99.0)),
        ([float(k) for k in range(1, 201)], (100.0, 190.0, 198.0)),
    ],
)
def test_nearest_rank_percentiles_on_known_samples(
    samples: list[float], expected: tuple[float | None, ...]
) -> None:
    assert tuple(percentile(samples, p) for p in (50, 95, 99)) == expected


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1), st.integers(1, 100))
def test_a_percentile_is_a_measured_value_at_its_nearest_rank(samples: list[float], p: int) -> None:
    ordered = sorted(samples)
    value = percentile(ordered, p)
    assert value in ordered
    n = len(ordered)
    # Nearest rank: at least p% of the samples are <= it, and fewer than p% are < it.
    assert sum(x <= value for x in ordered) * 100 >= p * n
    assert sum(x < value for x in ordered) * 100 < p * n
