"""Issue 12's targets, judged against the medians, and the printed table."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    measure: str
    scenario: str
    key: str
    limit: float
    higher_is_better: bool
    unit: str
    # For a limit that depends on the run (stall: idle_timeout + 0.5 s).
    limit_key: str | None = None
    limit_offset: float = 0.0

    def judge(self, median: dict[str, dict[str, float]]) -> dict[str, Any]:
        got = median.get(self.scenario, {}).get(self.key, math.nan)
        limit = self.limit
        if self.limit_key is not None:
            limit = median.get(self.scenario, {}).get(self.limit_key, math.nan) + self.limit_offset
        if math.isnan(got) or math.isnan(limit):
            verdict = "n/a"
        else:
            ok = got >= limit if self.higher_is_better else got <= limit
            verdict = "pass" if ok else "FAIL"
        sign = "≥" if self.higher_is_better else "≤"
        return {
            "measure": self.measure,
            "target": f"{sign} {_num(limit)}{self.unit}",
            "measured": got,
            "unit": self.unit,
            "verdict": verdict,
        }


TARGETS = (
    Target("archive wall time / curl's, same batches, same run", "archive", "wall_vs_curl",
           1.0, False, "x"),
    Target("daemon CPU / curl's", "archive", "cpu_vs_curl", 2.0, False, "x"),
    Target("RSS with 500 live streams", "slow", "slow_rss_mib", 120, False, " MiB"),
    Target("event-loop lag p99 with 500 live streams", "slow", "slow_lag_p99_ms", 50, False,
           " ms"),
    Target("durable webhook ingest, alone", "ingest", "ingest_per_s", 3000, True, "/s"),
    Target("  … its p99", "ingest", "ingest_p99_ms", 20, False, " ms"),
    Target("durable webhook ingest while archiving", "loaded", "ingest_per_s", 1000, True, "/s"),
    Target("  … its p99", "loaded", "ingest_p99_ms", 50, False, " ms"),
    Target("stall → resume (max)", "stalls", "stall_total_max_s", 0.0, False, " s",
           limit_key="stall_idle_timeout_s", limit_offset=0.5),
)  # fmt: skip


def _num(x: float, digits: int = 2) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def _row(cells: list[str], widths: list[int]) -> str:
    return "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w)
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return [_row(head, widths), _row(["-" * w for w in widths], widths)] + [
        _row(r, widths) for r in rows
    ]


def render(result: dict[str, Any]) -> str:
    med: dict[str, dict[str, float]] = result["median"]
    info = result["machine"]
    n = result["runs_each"]
    lines = [
        f"cxstream bench: medians of {n} run{'s' if n > 1 else ''}; "
        f"{info['nproc']} x {info['cpu']}, Python {info['python']}, "
        f"load {info['loadavg_start'][0]:.1f} → {info['loadavg_end'][0]:.1f}",
        "",
    ]
    if a := med.get("archive"):
        size = result["sizes"]["archive"]
        lines.append(
            f"1. Archive: {size['recordings']} recordings x {size['segments']} PCM segments "
            f"({a['mb']:.0f} MB, {size['recordings'] * -(-size['segments'] // 3)} batch GETs)"
        )
        rows = []
        names = {"daemon": f"cxstream (concurrency {size['concurrency']})",
                 "curl": "curl (1 process, keep-alive, -K)",
                 "aria2c": f"aria2c -j{size['concurrency']}"}  # fmt: skip
        for tool, label in names.items():
            if f"{tool}_wall_s" not in a:
                continue
            wall = a[f"{tool}_wall_s"]
            cpu, rss, sim = a[f"{tool}_cpu_s"], a[f"{tool}_peak_rss_mib"], a[f"{tool}_sim_cpu_s"]
            fsync = "(included)" if tool == "daemon" else _num(a.get(f"{tool}_fsync_s", math.nan))
            speed = _num(a["mb"] / wall, 0)
            rows.append([label, _num(wall), speed, _num(cpu), _num(rss, 0), _num(sim), fsync])
        lines += [
            "   " + x
            for x in _table(
                ["", "wall s", "MB/s", "CPU s", "peak RSS MiB", "sim CPU s", "then fsync s"], rows
            )
        ]
        ratios = [
            f"{what} {a[k]:.2f}x"
            for what, k in (
                ("wall cxstream/curl", "wall_vs_curl"),
                ("CPU cxstream/curl", "cpu_vs_curl"),
                ("wall cxstream/aria2c", "wall_vs_aria2c"),
                ("CPU cxstream/aria2c", "cpu_vs_aria2c"),
            )
            if k in a
        ]
        lines += ["   ratios (median of per-run ratios): " + ", ".join(ratios), ""]
    if s := med.get("slow"):
        lines += [
            f"2. Slow streams: {s['slow_streams']:.0f} recordings trickling at "
            f"{result['sizes']['slow']['bytes_per_second'] / 1000:.0f} kB/s "
            f"(measured {s['slow_kb_per_stream_s']:.1f} kB/s each, "
            f"{s['slow_live_at_end']:.0f} live)",
            f"   RSS {s['slow_rss_mib']:.0f} MiB (peak {s['slow_peak_rss_mib']:.0f}), "
            f"CPU {s['slow_cpu_pct']:.0f}% of a core = "
            f"{s['slow_cpu_ms_per_stream_s']:.3f} ms per stream-second, "
            f"event-loop lag p50 ≤ {s['slow_lag_p50_ms']:.0f} ms, "
            f"p99 ≤ {s['slow_lag_p99_ms']:.0f} ms; simulator CPU {s['slow_sim_cpu_pct']:.0f}%",
            "",
        ]
    ingest_rows = []
    for name, label in (("ingest", "alone"), ("loaded", "while archiving")):
        if (i := med.get(name)) and "ingest_per_s" in i:
            ingest_rows.append([label, _num(i["ingest_per_s"], 0), _num(i["ingest_p50_ms"], 1),
                                _num(i["ingest_p99_ms"], 1), _num(i["ingest_max_ms"], 1),
                                _num(i["ingest_sender_cpu_s"])])  # fmt: skip
    if ingest_rows:
        size = result["sizes"]["ingest"]
        lines.append(
            f"3. Webhook ingest: {size['webhooks']} signed webhooks, {size['senders']} "
            "parallel senders (a separate process), each 202 after its fsync'd commit"
        )
        head = ["", "accepted/s", "p50 ms", "p99 ms", "max ms", "sender CPU s"]
        lines += ["   " + x for x in _table(head, ingest_rows)] + [""]
    if st := med.get("stalls"):
        lines += [
            f"4. Stall → resume: {st['stalls']:.0f} stalls, idle_timeout_s "
            f"{st['stall_idle_timeout_s']}: stalled request → resumed p50 "
            f"{st['stall_total_p50_s']:.3f} s, p95 {st['stall_total_p95_s']:.3f} s, max "
            f"{st['stall_total_max_s']:.3f} s (detected after {st['stall_detect_p50_s']:.3f} s;"
            f" resumed {st['stall_resume_p50_ms']:.0f} ms later, max "
            f"{st['stall_resume_max_ms']:.0f} ms)",
            "",
        ]
    if a := med.get("archive"):
        lines += [
            f"5. Cost: {a['cpu_ms_per_mb']:.1f} CPU-ms per MB archived, "
            f"{a['cpu_ms_per_recording']:.0f} CPU-ms per recording "
            f"({a['mb'] / a['recordings']:.1f} MB each)",
            "",
        ]
    rows = [
        [t["measure"], t["target"], _num(t["measured"]) + t["unit"], t["verdict"]]
        for t in result["targets"]
    ]
    lines += ["Targets (issue 12; informational)"] + [
        "   " + x for x in _table(["measure", "target", "measured", ""], rows)
    ]
    return "\n".join(lines)
