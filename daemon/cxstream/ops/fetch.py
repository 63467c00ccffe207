"""``cxstream fetch RECORDING_ID``: one recording in the foreground, for debugging.

The same code path as the daemon's workers (``daemon.make_runner``) on the
same journal: the job is claimed in one transaction (so a running daemon
cannot take it at the same time), and ends completed or failed there, with
its archive announcement in the outbox for the daemon's notifier. Audit
lines go to ``audit.path`` when it is a file, and to stderr to be read.
Ctrl-C hands the job back checkpointed and queued, as a stopping daemon does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from cxstream.audit.log import AuditFile, audit_to
from cxstream.config import Config
from cxstream.daemon import make_runner
from cxstream.fetcher.source import Media, Source, Target
from cxstream.fetcher.transport import make_session
from cxstream.journal import Job, JobRequest, JobState, Journal, JournalError, JournalOps
from cxstream.metrics import Metrics
from cxstream.ops import fmt
from cxstream.sink.store import StoreStartError, local_root, open_store

_REDRAW_S = 0.2
_BAR = 24


class _Screen:
    """Audit lines and a progress line on stderr; the file copy of each line beside."""

    def __init__(self, err: TextIO, tty: bool, file: AuditFile | None) -> None:
        self.err, self.tty, self.file = err, tty, file
        self.bar = ""
        self.resumed = 0  # bytes a resumed job already had, from recording.started

    def write(self, data: bytes) -> int:
        if self.file is not None:
            self.file.write(data)
        with contextlib.suppress(orjson.JSONDecodeError):
            doc = orjson.loads(data)
            if doc.get("event") == "recording.started":
                self.resumed = int(doc.get("resumed_bytes") or 0)
        if not self.tty:
            self.err.write(data.decode(errors="replace"))
            return len(data)
        self.err.write("\r\x1b[K" + _compact(data) + "\n" + self.bar)
        self.err.flush()
        return len(data)

    def flush(self) -> None:
        self.err.flush()

    def draw(self, line: str) -> None:
        self.bar = line
        self.err.write("\r\x1b[K" + line)
        self.err.flush()

    def clear(self) -> None:
        if self.tty and self.bar:
            self.err.write("\r\x1b[K")
            self.err.flush()


def _compact(data: bytes) -> str:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode(errors="replace").rstrip()
    skip = {"ts", "level", "event", "recording_id"}
    rest = " ".join(f"{k}={v}" for k, v in doc.items() if k not in skip)
    return f"{doc.get('level', ''):<7} {doc.get('event', '')} {rest}".rstrip()


def _bar(done: float, total: int | None, rate: float, elapsed: float) -> str:
    speed = f"{fmt.size(rate)}/s"
    clock = f"{int(elapsed) // 60}:{int(elapsed) % 60:02d}"
    if not total:
        return f"{fmt.size(done)}  {speed}  {clock}"
    part = min(1.0, done / total)
    filled = int(part * _BAR)
    bar = "#" * filled + "-" * (_BAR - filled)
    return f"[{bar}] {part:6.1%}  {fmt.size(done)} of {fmt.size(total)}  {speed}  {clock}"


async def _progress(screen: _Screen, metrics: Metrics, sized: _Sized, started: float) -> None:
    samples: list[tuple[float, float]] = []
    while True:
        now = time.monotonic()
        got = metrics.registry.get_sample_value("cxstream_stream_bytes_total") or 0.0
        samples = [s for s in samples if now - s[0] <= 3.0] + [(now, got)]
        window = samples[-1][0] - samples[0][0]
        rate = (samples[-1][1] - samples[0][1]) / window if window > 0 else 0.0
        screen.draw(_bar(screen.resumed + got, sized.total, rate, now - started))
        await asyncio.sleep(_REDRAW_S)


async def fetch(
    cfg: Config,
    journal: Journal,
    ops: JournalOps,
    recording_id: str,
    *,
    contact: str | None = None,
    secrets: list[str],
    as_json: bool,
    out: TextIO,
    err: TextIO,
    tty: bool,
) -> int:
    # CXone's playback API knows contacts only: the name then names the job, and
    # further files of the contact are queued for the daemon (contract §8).
    playback = cfg.source.kind == "cxone-playback"
    request = JobRequest(
        webhook_id=f"cli_{uuid.uuid4().hex}",
        recording_id=recording_id,
        contact_id=contact,
        codec=None,
        offsets=None,
        day=datetime.now(UTC).strftime("%Y/%m/%d"),
        scope="contact" if playback else "recording",
    )
    # Everything that can fail before the job is ours, first: the roots exist (as
    # the daemon makes them at start) and the audit file opens.
    try:
        for root in (local_root(cfg.storage), cfg.storage.state_dir):
            root.mkdir(parents=True, exist_ok=True)
        audit_file = None if cfg.audit.path == "-" else AuditFile(cfg.audit.path)
    except OSError as exc:
        print(f"cxstream: {exc.filename or 'storage'}: {exc.strerror}", file=err)
        return 2
    try:
        taken = await ops.take(request)
        if taken is JobState.RUNNING:
            print(f"cxstream: {recording_id} is running in the daemon; see `jobs show`", file=err)
            return 1
        if taken is JobState.COMPLETED:
            info = await ops.job(recording_id)
            path = None if info is None or info.result is None else info.result.get("path")
            print(f"cxstream: {recording_id} is already archived: {path}", file=err)
            return 0
        assert isinstance(taken, Job)
        code = await _run_taken(cfg, journal, taken, audit_file, secrets, err, tty)
        if code is not None:
            return code
    finally:
        if audit_file is not None:
            audit_file.close()
    info = await ops.job(recording_id)
    assert info is not None
    doc: dict[str, Any] = fmt.job_json(info) | {"result": info.result}
    if as_json:
        out.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif info.state is JobState.COMPLETED and info.result is not None:
        r = info.result
        print(f"archived {recording_id}: {r.get('path')}", file=out)
        print(
            f"  {r.get('bytes')} bytes, sha256 {r.get('sha256')}, codec {r.get('codec')}", file=out
        )
    else:
        print(f"failed {recording_id}: {info.error} after {info.attempts} attempt(s)", file=out)
    return 0 if info.state is JobState.COMPLETED else 1


async def _run_taken(
    cfg: Config,
    journal: Journal,
    taken: Job,
    audit_file: AuditFile | None,
    secrets: list[str],
    err: TextIO,
    tty: bool,
) -> int | None:
    """Run the job this process took; an exit status if it never ran, else None."""
    screen = _Screen(err, tty, audit_file)
    metrics = Metrics()
    audit = audit_to(screen, secrets)
    running = False
    try:
        session = make_session(pool_size=4, connect_timeout_s=cfg.cxone.connect_timeout_s)
        async with session, open_store(cfg.storage, audit) as store:
            runner = make_runner(cfg, session, journal, audit, metrics, store=store)
            runner.source = sized = _Sized(runner.source)
            drawing = None
            if tty:
                drawing = asyncio.create_task(_progress(screen, metrics, sized, time.monotonic()))
            try:
                running = True  # from here the runner hands the job back itself
                await runner.run(taken)
            finally:
                if drawing is not None:
                    drawing.cancel()
                screen.clear()
    except StoreStartError as exc:
        await _give_back(journal, taken)
        print(f"cxstream: storage: {exc}", file=err)
        return 2
    except BaseException:
        if not running:
            # Taken but never run (Ctrl-C, a session that would not open): back
            # to the queue as it was, never left "running" until a restart.
            await asyncio.shield(_give_back(journal, taken))
        raise
    return None


async def _give_back(journal: Journal, taken: Job) -> None:
    with contextlib.suppress(JournalError):
        await journal.release(taken.id)


class _Sized:
    """The runner's source, unchanged, noting the expected size of the media being
    fetched: the bar's 100 %, without a request of its own."""

    def __init__(self, inner: Source) -> None:
        self._inner = inner
        self.kind = inner.kind
        self.total: int | None = None

    async def resolve(self, job: Job) -> tuple[Target, ...]:
        return await self._inner.resolve(job)

    async def media(self, job: Job, target: Target, fmt: str) -> Media:
        media = await self._inner.media(job, target, fmt)
        self.total = media.expect.size or media.max_bytes
        return media

    def forget(self, job: Job) -> None:
        self._inner.forget(job)
