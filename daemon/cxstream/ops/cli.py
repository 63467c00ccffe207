"""Arguments and dispatch of ``cxstream status``, ``cxstream jobs …`` and ``cxstream fetch``.

Exit status: 0 done; 1 a job not found, not retryable, or a fetch that
failed; 2 a usage or configuration error (one line on stderr, as everywhere).
Only ``fetch`` needs the secrets; the others read nothing but the journal and
``audit.path``, so they run without the credentials.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from cxstream.config import Config, ConfigError
from cxstream.journal import JobState, Journal, JournalError, JournalOps, SqliteJournal
from cxstream.journal.sqlite_ops import SqliteJournalOps
from cxstream.ops import fmt

COMMANDS = frozenset({"status", "jobs", "fetch"})


def _since(text: str) -> float:
    try:
        return fmt.parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--since: ")) from None


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def add_parsers(sub: Any) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="the daemon's TOML file")
        p.add_argument("--json", action="store_true", help="JSON for scripts")

    common(sub.add_parser("status", help="streams, queue and failures, from the journal"))
    jobs = sub.add_parser("jobs", help="list, show or retry jobs in the journal")
    jsub = jobs.add_subparsers(dest="jobs_command", required=True, parser_class=type(jobs))
    lst = jsub.add_parser("list", help="jobs, most recently changed first")
    common(lst)
    lst.add_argument("--state", choices=[s.value for s in JobState])
    lst.add_argument("--since", type=_since, help="changed since: 30m, 2h, 7d or ISO 8601")
    lst.add_argument("--limit", type=_limit, default=1000, help="at most N (default 1000)")
    show = jsub.add_parser("show", help="one job and its audit lines")
    common(show)
    show.add_argument("recording_id")
    retry = jsub.add_parser("retry", help="re-queue failed jobs; a running daemon takes them")
    common(retry)
    retry.add_argument("recording_ids", nargs="*", metavar="RECORDING_ID")
    retry.add_argument("--state", choices=["failed"], help="every failed job")
    fetch = sub.add_parser("fetch", help="fetch one recording in the foreground (debugging)")
    common(fetch)
    fetch.add_argument("recording_id")
    fetch.add_argument(
        "--contact",
        help="the contact (CXone) or conversation (Genesys) id; required for"
        " source.kind cxone-playback and genesys",
    )


def _usage(message: str) -> int:
    print(f"cxstream: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    from cxstream import config as config_mod
    from cxstream.ingress.event import RECORDING_ID

    retry = args.command == "jobs" and args.jobs_command == "retry"
    if retry and bool(args.recording_ids) == bool(args.state):
        return _usage("jobs retry: name recording ids or give --state failed (one of them)")
    if args.command == "fetch" and not RECORDING_ID.fullmatch(args.recording_id):
        return _usage(f"fetch: not a valid recording id: {args.recording_id[:140]!r}")
    try:
        cfg = config_mod.load(args.config, need_secrets=args.command == "fetch")
        if args.command == "fetch" and cfg.source.kind != "cxone-stream" and not args.contact:
            return _usage(f"fetch: --contact is required for source.kind {cfg.source.kind}")
    except ConfigError as exc:
        return _usage(f"config: {exc}")
    try:
        return asyncio.run(_open_and_run(args, cfg))
    except KeyboardInterrupt:
        return 130


async def _open_and_run(args: argparse.Namespace, cfg: Config) -> int:
    from cxstream.journal import JOURNAL_FILE

    if cfg.journal.backend == "postgres":
        return await _open_postgres(args, cfg)
    path = cfg.storage.state_dir / JOURNAL_FILE
    if not path.is_file():
        return _usage(f"no journal at {path} (storage.state_dir; has the daemon run?)")
    journal = SqliteJournal(path)
    try:
        await journal.open()
    except JournalError as exc:
        await journal.close()
        return _usage(f"cannot open the journal {path}: {exc}")
    return await _run_closing(args, cfg, journal, SqliteJournalOps(journal), str(path))


async def _open_postgres(args: argparse.Namespace, cfg: Config) -> int:
    from cxstream.journal import build_journal
    from cxstream.journal.pg_ops import PgJournalOps
    from cxstream.journal.postgres import PostgresJournal

    journal = build_journal(cfg)
    assert isinstance(journal, PostgresJournal)
    # Its own name: a daemon on this host re-queues its own node's jobs at start.
    journal.node = f"{journal.node}-cli"
    try:
        await journal.open()
    except JournalError as exc:
        await journal.close()
        return _usage(f"cannot open the journal: {exc}")
    return await _run_closing(args, cfg, journal, PgJournalOps(journal), journal.location)


async def _run_closing(
    args: argparse.Namespace, cfg: Config, journal: Journal, ops: JournalOps, where: str
) -> int:
    try:
        return await _dispatch(args, cfg, journal, ops, where)
    except JournalError as exc:
        print(f"cxstream: journal: {exc}", file=sys.stderr)
        return 1
    finally:
        await journal.close()


async def _dispatch(
    args: argparse.Namespace, cfg: Config, journal: Journal, ops: JournalOps, where: str
) -> int:
    from cxstream.ops import jobs

    out = sys.stdout
    if args.command == "status":
        return await jobs.status(journal, ops, where=where, as_json=args.json, out=out)
    if args.command == "fetch":
        from cxstream.ops.fetch import fetch

        secrets = cfg.secrets()
        return await fetch(
            cfg,
            journal,
            ops,
            args.recording_id,
            contact=args.contact,
            secrets=secrets,
            as_json=args.json,
            out=out,
            err=sys.stderr,
            tty=sys.stderr.isatty(),
        )
    if args.jobs_command == "list":
        state = None if args.state is None else JobState(args.state)
        return await jobs.list_jobs(
            ops, state=state, since=args.since, limit=args.limit, as_json=args.json, out=out
        )
    if args.jobs_command == "show":
        return await jobs.show(
            ops, args.recording_id, audit_path=cfg.audit.path, as_json=args.json, out=out
        )
    ids = None if args.state else list(args.recording_ids)
    return await jobs.retry(ops, ids, as_json=args.json, out=out)
