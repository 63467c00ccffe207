"""``cxstream sim``: run the simulator until SIGINT/SIGTERM.

    cxstream sim --listen 127.0.0.1:8700 --corpus corpus.toml \\
        --client-id ID --client-secret S --archive-secret whsec_... --token-ttl 3600

Without ``--corpus`` the packaged demo corpus is served. Prints one line with
the URLs to stderr once listening; bad arguments print one line and exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
from dataclasses import dataclass
from typing import NoReturn

from cxstream.sim.corpus import default_corpus, load_corpus
from cxstream.sim.server import (
    DEFAULT_ARCHIVE_SECRET,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    SimServer,
)
from cxstream.sim.spec import RecordingSpec

PROG = "cxstream sim"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    # argparse prints a usage block and exits; we want one line and a return code.
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


@dataclass(frozen=True, slots=True)
class Options:
    host: str
    port: int
    corpus: list[RecordingSpec]
    client_id: str
    client_secret: str
    archive_secret: str
    token_ttl: float


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def parse_args(argv: list[str]) -> Options:
    parser = _Parser(prog=PROG, description="Simulate the CXone recording API and archive sink.")
    parser.add_argument("--listen", default="127.0.0.1:8700", help="HOST:PORT to listen on")
    parser.add_argument("--corpus", help="recordings to serve (.toml or .json); default: demo")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--archive-secret", default=DEFAULT_ARCHIVE_SECRET, help="whsec_...")
    parser.add_argument("--token-ttl", type=float, default=3600.0, help="token lifetime, s")
    args = parser.parse_args(argv)
    host, port = parse_listen(args.listen)
    if not 0 < args.token_ttl < math.inf:
        raise UsageError(f"--token-ttl must be positive, got {args.token_ttl}")
    try:
        corpus = load_corpus(args.corpus) if args.corpus else default_corpus()
    except ValueError as exc:
        raise UsageError(f"--corpus: {exc}") from None
    return Options(
        host=host,
        port=port,
        corpus=corpus,
        client_id=args.client_id,
        client_secret=args.client_secret,
        archive_secret=args.archive_secret,
        token_ttl=args.token_ttl,
    )


async def serve(options: Options) -> int:
    try:
        sim = SimServer(
            options.corpus,
            client_id=options.client_id,
            client_secret=options.client_secret,
            archive_secret=options.archive_secret,
            token_ttl=options.token_ttl,
            host=options.host,
            port=options.port,
        )
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        await sim.start()
    except OSError as exc:
        print(f"{PROG}: cannot listen on {options.host}:{options.port}: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(
        f"{PROG}: base_url={sim.base_url} token_url={sim.token_url} "
        f"archive_url={sim.archive_url} recordings={len(options.corpus)}",
        file=sys.stderr,
        flush=True,
    )
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await sim.stop()
    return 0


def main(argv: list[str]) -> int:
    try:
        options = parse_args(argv)
    except UsageError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    return asyncio.run(serve(options))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
