"""A throwaway PostgreSQL cluster: initdb + pg_ctl in a temporary directory.

PostgreSQL refuses to run as root, so as root the cluster belongs to a
dedicated system user (created once with useradd) and every server command
runs through ``runuser``. It listens on 127.0.0.1 only, on a port the kernel
picked, with trust authentication (nothing but this machine can reach it),
and ``fsync=off`` (its data is thrown away at the end).
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cxstream.devservers import Missing

PG_USER = "cxstream-pg"
_counter = itertools.count()
_INITDB = ("--auth=trust", "-E", "UTF8", "--no-sync")
_START = ("-w", "-t", "60", "start")


def pg_bindir() -> Path | None:
    """The newest installed server's binaries (Debian puts them per major version)."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        on_path = shutil.which("initdb")
        return Path(on_path).resolve().parent if on_path else None
    newest = max(found, key=lambda p: int(Path(p).parents[1].name))
    return Path(newest).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_owner() -> list[str]:
    return ["runuser", "-u", PG_USER, "--"] if os.geteuid() == 0 else []


def _ensure_user() -> None:
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )


@dataclass(frozen=True)
class Cluster:
    port: int
    root: Path

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.encode())

    def new_database(self) -> str:
        name = f"t{os.getpid()}_{next(_counter)}"
        self.admin(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        name = dsn.rsplit("/", 1)[1]
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def check() -> Path:
    """The server binaries' directory; ``Missing`` when PostgreSQL or psycopg is absent."""
    bindir = pg_bindir()
    if bindir is None:
        raise Missing("PostgreSQL server binaries not installed (apt-get install postgresql)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise Missing("psycopg not installed (pip install -e '.[postgres]')") from None
    return bindir


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    """A running cluster for the block's duration; stopped and removed afterwards."""
    bindir = check()
    _ensure_user()
    root = Path(tempfile.mkdtemp(prefix="cxstream-pg-"))
    data, log = root / "data", root / "server.log"
    if os.geteuid() == 0:
        shutil.chown(root, PG_USER, PG_USER)
    owner = _as_owner()
    port = _free_port()
    pg_ctl = str(bindir / "pg_ctl")
    try:
        subprocess.run(
            [*owner, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", *_INITDB],
            check=True,
            capture_output=True,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
            " -c full_page_writes=off -c max_connections=200"
        )
        started = subprocess.run(
            [*owner, pg_ctl, "-D", str(data), "-l", str(log), "-o", options, *_START],
            capture_output=True,
        )
        if started.returncode != 0:
            detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stderr.decode()}\n{detail}")
        yield Cluster(port=port, root=root)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*owner, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
            )
        shutil.rmtree(root, ignore_errors=True)
