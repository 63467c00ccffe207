"""``cxstream status`` and ``cxstream jobs list|show|retry``: the journal, read (and
re-queued) while the daemon runs.

Each returns an exit status: 0 done, 1 something asked for was not found or
not possible. Human text on stdout by default, one JSON document with ``--json``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson

from cxstream.journal import JobInfo, JobState, Journal, JournalOps
from cxstream.ops import fmt

HOUR_S = 3600.0
_LIMIT = 10_000


def _emit(doc: Any, out: TextIO) -> None:
    out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")


async def status(
    journal: Journal, ops: JournalOps, *, where: str, as_json: bool, out: TextIO
) -> int:
    now = time.time()
    active = await ops.jobs(JobState.RUNNING, None, _LIMIT)
    queued, oldest_at = await journal.queued()
    backlog, _ = await journal.backlog()
    completed = await ops.count(JobState.COMPLETED, now - HOUR_S)
    failed = await ops.count(JobState.FAILED, now - HOUR_S)
    oldest_age = None if oldest_at is None else max(0.0, now - oldest_at)
    if as_json:
        _emit(
            {
                "journal": where,
                "queued": queued,
                "oldestQueuedAgeSeconds": None if oldest_age is None else round(oldest_age, 3),
                "completedLastHour": completed,
                "failedLastHour": failed,
                "archiveBacklog": backlog,
                "active": [
                    {
                        "recordingId": j.recording_id,
                        "bytes": j.offset or 0,
                        "rateBytesPerSecond": None
                        if fmt.rate(j) is None
                        else round(fmt.rate(j) or 0),
                        "attempts": j.attempts,
                        "runStartedAt": fmt.rfc3339(j.run_started_at),
                        "updatedAt": fmt.rfc3339(j.updated_at),
                    }
                    for j in active
                ],
            },
            out,
        )
        return 0
    oldest = "" if oldest_age is None else f" (oldest waiting {fmt.age(oldest_age)})"
    print(f"journal    {where}", file=out)
    print(f"queued     {queued}{oldest}", file=out)
    print(f"last hour  {completed} completed, {failed} failed", file=out)
    print(f"archive    {backlog} announcement(s) waiting", file=out)
    print(f"active     {len(active)} stream(s)", file=out)
    if active:
        rows = [
            [
                j.recording_id,
                fmt.size(j.offset or 0),
                "-" if fmt.rate(j) is None else fmt.size(fmt.rate(j)) + "/s",
                str(j.attempts),
                fmt.age(now - j.updated_at) + " ago",
            ]
            for j in active
        ]
        headers = ["RECORDING", "BYTES", "RATE", "FAILURES", "LAST CHECKPOINT"]
        print(_indent(fmt.table(headers, rows)), file=out)
    return 0


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


async def list_jobs(
    ops: JournalOps,
    *,
    state: JobState | None,
    since: float | None,
    limit: int,
    as_json: bool,
    out: TextIO,
) -> int:
    jobs = await ops.jobs(state, since, limit)
    if as_json:
        _emit([fmt.job_json(j) for j in jobs], out)
        return 0
    if not jobs:
        print("no jobs", file=sys.stderr)
        return 0
    rows = [
        [
            j.recording_id,
            j.state.value,
            str(j.attempts),
            fmt.size(fmt.job_bytes(j)) if fmt.job_bytes(j) is not None else "-",
            fmt.short_time(j.updated_at),
            j.error or "",
        ]
        for j in jobs
    ]
    headers = ["RECORDING", "STATE", "ATTEMPTS", "BYTES", "UPDATED", "ERROR"]
    print(fmt.table(headers, rows), file=out)
    return 0


def audit_history(path: Path, recording_id: str) -> Iterator[dict[str, Any]]:
    """The audit lines of one recording, in file order (a plain scan: no index to trust)."""
    needle = orjson.dumps(recording_id)
    with path.open("rb") as fh:
        for line in fh:
            if needle not in line:
                continue
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(doc, dict) and doc.get("recording_id") == recording_id:
                yield doc


async def show(
    ops: JournalOps, recording_id: str, *, audit_path: str, as_json: bool, out: TextIO
) -> int:
    job = await ops.job(recording_id)
    if job is None:
        print(f"cxstream: no job for recording {recording_id!r}", file=sys.stderr)
        return 1
    history: list[dict[str, Any]] | None = None
    note = ""
    if audit_path == "-":
        note = "audit trail on stdout (journald): journalctl -u cxstream -o cat | grep " + (
            orjson.dumps(recording_id).decode()
        )
    else:
        try:
            history = list(audit_history(Path(audit_path), recording_id))
        except OSError as exc:
            note = f"audit file {audit_path}: {exc.strerror}"
    if as_json:
        doc = fmt.job_json(job) | {"result": job.result, "audit": history}
        if job.offset is not None:
            doc["checkpointBytes"] = job.offset
        _emit(doc, out)
        return 0
    _print_job(job, out)
    if history is not None:
        print(f"audit ({len(history)} line(s) in {audit_path}):", file=out)
        for line in history:
            print("  " + _audit_line(line), file=out)
    if note:
        print(note, file=out)
    return 0


def _print_job(job: JobInfo, out: TextIO) -> None:
    fields = fmt.job_json(job)
    for key in ("recordingId", "state", "attempts", "error", "contactId", "codec", "day"):
        if fields[key] is not None:
            print(f"{key:<12} {fields[key]}", file=out)
    if job.offset is not None:
        print(f"{'checkpoint':<12} {fmt.size(job.offset)} on disk", file=out)
    if job.result is not None:
        for key in ("path", "bytes", "sha256", "ttfb_ms", "duration_ms"):
            if key in job.result:
                print(f"{key:<12} {job.result[key]}", file=out)
    print(f"{'createdAt':<12} {fields['createdAt']}", file=out)
    print(f"{'updatedAt':<12} {fields['updatedAt']}", file=out)


def _audit_line(doc: dict[str, Any]) -> str:
    skip = {"ts", "level", "event", "recording_id"}
    rest = " ".join(
        f"{k}={orjson.dumps(v).decode() if not isinstance(v, str) else v}"
        for k, v in doc.items()
        if k not in skip
    )
    return f"{doc.get('ts', '')} {doc.get('level', ''):<7} {doc.get('event', '')} {rest}".rstrip()


async def retry(
    ops: JournalOps, recording_ids: Sequence[str] | None, *, as_json: bool, out: TextIO
) -> int:
    done = await ops.retry(recording_ids)
    skipped: list[dict[str, str]] = []
    for rid in dict.fromkeys(recording_ids or ()):
        if rid in done:
            continue
        job = await ops.job(rid)
        reason = "not found" if job is None else f"is {job.state.value}, not failed"
        skipped.append({"recordingId": rid, "reason": reason})
    if as_json:
        _emit({"requeued": done, "skipped": skipped}, out)
    else:
        if done:
            print(f"re-queued {len(done)}: {', '.join(done)}", file=out)
        elif recording_ids is None:
            print("no failed jobs", file=out)
        for item in skipped:
            print(f"cxstream: {item['recordingId']}: {item['reason']}", file=sys.stderr)
    return 1 if skipped else 0
