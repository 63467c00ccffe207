"""``cxstream``: run, check-config, status, jobs, fetch, sim, demo, audit-report.

Bad input is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import NoReturn

from cxstream import __version__
from cxstream.config import ConfigError
from cxstream.ops import cli as ops_cli


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cxstream", description=__doc__)
    parser.add_argument("--version", action="version", version=f"cxstream {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", help="TOML file (default: built-in defaults + environment)")
    check = sub.add_parser("check-config", help="validate a configuration and exit")
    check.add_argument("--config", help="TOML file")
    sub.add_parser("sim", help="run the built-in CXone simulator", add_help=False)
    demo = sub.add_parser("demo", help="the main job, end to end, on the simulator")
    demo.add_argument("--keep", action="store_true", help="keep the demo's files")
    demo.add_argument(
        "--platform",
        default="cxone-stream",
        choices=("cxone-stream", "cxone-playback", "genesys", "all"),
        help="which platform's simulator (all: the three in turn)",
    )
    demo.add_argument(
        "--nodes",
        type=_node_count,
        default=1,
        help="cxone-stream on N daemons sharing PostgreSQL and an S3 server, one killed halfway",
    )
    report = sub.add_parser("audit-report", help="summarise an audit log per hour")
    report.add_argument("file", help="NDJSON audit file, '-' for stdin")
    report.add_argument("--json", action="store_true", help="JSON instead of a table")
    ops_cli.add_parsers(sub)
    return parser


def _node_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 9:
        raise argparse.ArgumentTypeError(f"expected 1 to 9 nodes, got {text!r}")
    return int(text)


class _ClientFaultFilter(logging.Filter):
    """aiohttp logs a traceback for every malformed request a client sends.

    That is the client's fault, answered with a 400 already; a traceback per
    bad request would let anyone flood the journal. Keep one line, no stack.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "bad request from client: %s", (exc.message,)
            record.exc_info, record.exc_text, record.levelno, record.levelname = (
                None,
                None,
                logging.WARNING,
                "WARNING",
            )
        return True


def _diagnostics() -> None:
    # Diagnostics go to stderr so that stdout can carry nothing but NDJSON.
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.server").addFilter(_ClientFaultFilter())


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:
        # The reader went away (`cxstream demo | head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv: list[str]) -> int:
    if argv[:1] == ["sim"]:
        from cxstream.sim.cli import main as sim_main

        return sim_main(argv[1:])
    args = _parser().parse_args(argv)
    _diagnostics()
    if args.command in ("run", "check-config"):
        return _run(args.command, args.config)
    if args.command in ops_cli.COMMANDS:
        return ops_cli.main(args)
    if args.command == "demo" and args.nodes > 1:
        if args.platform != "cxone-stream":
            print("cxstream demo: --nodes runs the cxone-stream demo only", file=sys.stderr)
            return 2
        from cxstream.demo.cluster import main as cluster_main

        return cluster_main(nodes=args.nodes, keep=args.keep)
    if args.command == "demo":
        from cxstream.demo import main as demo_main

        return demo_main(keep=args.keep, platform=args.platform)
    if args.command == "audit-report":
        from cxstream.report import main as report_main

        return report_main(args.file, as_json=args.json)
    return 2


def _run(command: str, path: str | None) -> int:
    from cxstream import config as config_mod

    try:
        cfg = config_mod.load(path)
    except ConfigError as exc:
        print(f"cxstream: config: {exc}", file=sys.stderr)
        return 2
    if command == "check-config":
        print(f"cxstream: config ok: {cfg.origin}", file=sys.stderr)
        return 0
    from cxstream.audit.log import close_audit, open_audit
    from cxstream.daemon import StartError, run

    try:
        audit, owned = open_audit(cfg.audit.path, cfg.secrets())
    except OSError as exc:
        print(f"cxstream: config: audit.path: cannot open: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        asyncio.run(run(cfg, audit, None if owned is None else owned.reopen))
    except StartError as exc:
        print(f"cxstream: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    finally:
        close_audit(owned)
    return 0
