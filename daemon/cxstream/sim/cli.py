"""``cxstream sim``: run a simulator until SIGINT/SIGTERM.

    cxstream sim [--platform cxone-stream] --listen 127.0.0.1:8700 --corpus corpus.toml \\
        --client-id ID --client-secret S --archive-secret whsec_... --token-ttl 3600
    cxstream sim --platform cxone-playback --listen 127.0.0.1:8700 \\
        [--auth-listen H:P] [--media-listen H:P] [--access-key-id ID] [--access-key-secret S]
        [--tenant-id T]
    cxstream sim --platform genesys --listen 127.0.0.1:8700 [--auth-listen H:P] [--media-listen H:P]

``--listen`` is the API host (which also serves ``/archive`` and ``/_sim``);
the platform simulators put their auth host (CXone's discovery and tokens,
Genesys's login) and media host on ``--auth-listen`` and ``--media-listen``,
by default the next two ports (or kernel-chosen ones when the API port is 0).
Without ``--corpus`` the platform's packaged demo corpus is served. Prints one
line with the URLs to stderr once listening; bad arguments print one line and
exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
from dataclasses import dataclass
from typing import NoReturn

from cxstream.sim.corpus import (
    default_corpus,
    default_genesys,
    default_playback,
    load_corpus,
    load_genesys_corpus,
    load_playback_corpus,
)
from cxstream.sim.platform import PlatformServer
from cxstream.sim.platform_servers import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    DEFAULT_TENANT_ID,
    GenesysSim,
    PlaybackSim,
)
from cxstream.sim.server import (
    DEFAULT_ARCHIVE_SECRET,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    SimServer,
)
from cxstream.sim.spec import RecordingSpec

PROG = "cxstream sim"
PLATFORMS = ("cxone-stream", "cxone-playback", "genesys")


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
    platform: str = "cxone-stream"
    auth: tuple[str, int] = ("127.0.0.1", 0)
    media: tuple[str, int] = ("127.0.0.1", 0)
    access_key_id: str = DEFAULT_ACCESS_KEY_ID
    access_key_secret: str = DEFAULT_ACCESS_KEY_SECRET
    tenant_id: str = DEFAULT_TENANT_ID
    corpus_path: str | None = None


def parse_listen(value: str, option: str = "--listen") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"{option} must be HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def _beside(host: str, port: int, offset: int, value: str | None, option: str) -> tuple[str, int]:
    if value is not None:
        return parse_listen(value, option)
    if port == 0:
        return host, 0
    if port + offset > 65535:
        raise UsageError(f"{option}: no port after {port}; give one")
    return host, port + offset


def parse_args(argv: list[str]) -> Options:
    parser = _Parser(prog=PROG, description="Simulate a contact-centre API and an archive sink.")
    parser.add_argument("--platform", default="cxone-stream", choices=PLATFORMS)
    parser.add_argument("--listen", default="127.0.0.1:8700", help="API host HOST:PORT")
    parser.add_argument("--auth-listen", help="auth/login host HOST:PORT (platforms)")
    parser.add_argument("--media-listen", help="media host HOST:PORT (platforms)")
    parser.add_argument("--corpus", help="what to serve (.toml or .json); default: demo")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--access-key-id", default=DEFAULT_ACCESS_KEY_ID)
    parser.add_argument("--access-key-secret", default=DEFAULT_ACCESS_KEY_SECRET)
    parser.add_argument("--tenant-id", default=DEFAULT_TENANT_ID)
    parser.add_argument("--archive-secret", default=DEFAULT_ARCHIVE_SECRET, help="whsec_...")
    parser.add_argument("--token-ttl", type=float, help="token lifetime, s")
    args = parser.parse_args(argv)
    host, port = parse_listen(args.listen)
    default_ttl = 86_400.0 if args.platform == "genesys" else 3600.0
    token_ttl = default_ttl if args.token_ttl is None else args.token_ttl
    if not 0 < token_ttl < math.inf:
        raise UsageError(f"--token-ttl must be positive, got {token_ttl}")
    corpus: list[RecordingSpec] = []
    if args.platform == "cxone-stream":
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
        token_ttl=token_ttl,
        platform=args.platform,
        auth=_beside(host, port, 1, args.auth_listen, "--auth-listen"),
        media=_beside(host, port, 2, args.media_listen, "--media-listen"),
        access_key_id=args.access_key_id,
        access_key_secret=args.access_key_secret,
        tenant_id=args.tenant_id,
        corpus_path=args.corpus,
    )


def _platform_server(options: Options) -> tuple[PlatformServer, str]:
    """The platform simulator and a summary of what it serves."""
    (auth_host, auth_port), (media_host, media_port) = options.auth, options.media
    if len({options.host, auth_host, media_host}) != 1:
        raise UsageError("--listen, --auth-listen and --media-listen must share one host")
    path = options.corpus_path
    if options.platform == "cxone-playback":
        try:
            settings, contacts = load_playback_corpus(path) if path else default_playback()
        except ValueError as exc:
            raise UsageError(f"--corpus: {exc}") from None
        playback = PlaybackSim(
            contacts,
            settings=settings,
            tenant_id=options.tenant_id,
            access_key_id=options.access_key_id,
            access_key_secret=options.access_key_secret,
            client_id=options.client_id,
            client_secret=options.client_secret,
            archive_secret=options.archive_secret,
            token_ttl=options.token_ttl,
            host=options.host,
            auth_port=auth_port,
            api_port=options.port,
            media_port=media_port,
        )
        return playback, f"contacts={len(contacts)}"
    try:
        g_settings, conversations = load_genesys_corpus(path) if path else default_genesys()
    except ValueError as exc:
        raise UsageError(f"--corpus: {exc}") from None
    genesys = GenesysSim(
        conversations,
        settings=g_settings,
        client_id=options.client_id,
        client_secret=options.client_secret,
        archive_secret=options.archive_secret,
        token_ttl=options.token_ttl,
        host=options.host,
        login_port=auth_port,
        api_port=options.port,
        media_port=media_port,
    )
    recordings = sum(len(c.recordings) for c in conversations)
    return genesys, f"conversations={len(conversations)} recordings={recordings}"


def _urls(sim: SimServer | PlatformServer) -> str:
    if isinstance(sim, PlaybackSim):
        return (
            f"issuer={sim.issuer} token_url={sim.token_url} api_url={sim.api_url} "
            f"media_url={sim.media_url} archive_url={sim.archive_url} tenant_id={sim.tenant_id}"
        )
    if isinstance(sim, GenesysSim):
        return (
            f"login_url={sim.login_url} api_url={sim.api_url} media_url={sim.media_url} "
            f"archive_url={sim.archive_url}"
        )
    assert isinstance(sim, SimServer)
    return f"base_url={sim.base_url} token_url={sim.token_url} archive_url={sim.archive_url}"


async def serve(options: Options) -> int:
    sim: SimServer | PlatformServer
    try:
        if options.platform == "cxone-stream":
            sim = SimServer(
                options.corpus,
                client_id=options.client_id,
                client_secret=options.client_secret,
                archive_secret=options.archive_secret,
                token_ttl=options.token_ttl,
                host=options.host,
                port=options.port,
            )
            summary = f"recordings={len(options.corpus)}"
        else:
            sim, summary = _platform_server(options)
    except (ValueError, UsageError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    try:
        await sim.start()
    except OSError as exc:
        print(f"{PROG}: cannot listen on {options.host}: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    platform = "" if options.platform == "cxone-stream" else f"platform={options.platform} "
    print(f"{PROG}: {platform}{_urls(sim)} {summary}", file=sys.stderr, flush=True)
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
