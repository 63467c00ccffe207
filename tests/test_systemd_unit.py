"""The shipped unit, sysusers/tmpfiles pair, install script and logrotate file, checked
by the real tools (systemd-analyze, systemd-sysusers, systemd-tmpfiles, logrotate)
where they exist."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest

from cxstream.sim.server import SimServer
from tests.harness import WEBHOOK_SECRET, Daemon, completed, sign, write_config
from tests.test_sdnotify import Listener

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "cxstream.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (Debian package systemd)"
)
# A build host has no /opt/cxstream: the one complaint `verify` may make.
_MISSING_INSTALL = re.compile(r"Command /opt/cxstream/bin/cxstream is not executable")


def _directives() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_unit_is_type_notify_with_watchdog_and_three_credentials() -> None:
    d = _directives()
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert int(d["WatchdogSec"][0]) > 0
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    creds = sorted(v.split(":", 1)[0] for v in d["LoadCredential"])
    assert creds == ["archive_secret", "cxone_client_secret", "webhook_secret"]


@needs_analyze
def test_systemd_analyze_verify_is_clean_apart_from_the_install_path() -> None:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "verify", str(UNIT)], capture_output=True, text=True, timeout=60, check=False
    )
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    unexpected = [ln for ln in lines if not _MISSING_INSTALL.search(ln)]
    assert not unexpected, "\n".join(unexpected)
    # A failure says why: a non-zero exit is only the missing install path.
    assert done.returncode == 0 or lines, done


@needs_analyze
def test_systemd_analyze_security_exposure_at_most_2() -> None:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for cxstream\.service: (\d+\.\d+)", done.stdout)
    assert match, done.stdout[-2000:] + done.stderr[-2000:]
    assert float(match.group(1)) <= 2.0, done.stdout


SYSUSERS = shutil.which("systemd-sysusers")
TMPFILES = shutil.which("systemd-tmpfiles")


@pytest.mark.skipif(SYSUSERS is None, reason="systemd-sysusers not installed")
def test_sysusers_creates_a_system_user_without_a_shell(tmp_path: Path) -> None:
    assert SYSUSERS is not None
    (tmp_path / "etc").mkdir()
    for name in ("passwd", "group"):
        (tmp_path / "etc" / name).touch()
    conf = ROOT / "systemd" / "cxstream.sysusers"
    subprocess.run([SYSUSERS, f"--root={tmp_path}", str(conf)], check=True, timeout=60)
    (user,) = [ln.split(":") for ln in (tmp_path / "etc/passwd").read_text().splitlines() if ln]
    assert user[0] == "cxstream" and int(user[2]) < 1000  # a system uid
    assert user[5] == "/var/lib/cxstream" and user[6].endswith("nologin")


@pytest.mark.skipif(TMPFILES is None, reason="systemd-tmpfiles not installed")
def test_tmpfiles_makes_config_group_readable_and_credentials_root_only(tmp_path: Path) -> None:
    assert TMPFILES is not None
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/group").write_text("root:x:0:\ncxstream:x:990:\n")
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    conf = ROOT / "systemd" / "cxstream.tmpfiles"
    subprocess.run([TMPFILES, f"--root={tmp_path}", "--create", str(conf)], check=True, timeout=60)
    etc, creds = (tmp_path / "etc/cxstream").stat(), (tmp_path / "etc/cxstream/credentials").stat()
    assert (etc.st_mode & 0o777, etc.st_uid, etc.st_gid) == (0o750, 0, 990)
    assert (creds.st_mode & 0o777, creds.st_uid, creds.st_gid) == (0o700, 0, 0)


def test_install_script_stages_a_working_install_and_keeps_what_is_there(tmp_path: Path) -> None:
    # ROOT= stages under a directory: no apt, no users, no systemctl. The venv
    # is real (pip installs this checkout), and the installed command works.
    env = {**os.environ, "ROOT": str(tmp_path)}
    script = str(ROOT / "systemd" / "install.sh")
    first = subprocess.run([script], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    creds = tmp_path / "etc/cxstream/credentials"
    assert sorted(p.name for p in creds.iterdir()) == [
        "archive_secret",
        "cxone_client_secret",
        "webhook_secret",
    ]
    assert all(p.stat().st_mode & 0o777 == 0o600 and not p.read_bytes() for p in creds.iterdir())
    assert (tmp_path / "etc/systemd/system/cxstream.service").read_bytes() == UNIT.read_bytes()
    assert (tmp_path / "etc/logrotate.d/cxstream").is_file()
    cxstream = tmp_path / "opt/cxstream/bin/cxstream"
    config = tmp_path / "etc/cxstream/cxstream.toml"
    check = [str(cxstream), "check-config", "--config", str(config)]
    cred_env = {**os.environ, "CREDENTIALS_DIRECTORY": str(creds)}
    # Empty credentials: check-config says which (and install.sh would not start it).
    done = subprocess.run(check, env=cred_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "webhook.secret" in done.stderr
    (creds / "webhook_secret").write_text(WEBHOOK_SECRET + "\n")
    (creds / "cxone_client_secret").write_text("s3cret-from-the-tenant\n")
    done = subprocess.run(check, env=cred_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # Run again (an upgrade): the operator's config and secrets stay as they are.
    config.write_text(config.read_text() + "\n# edited by the operator\n")
    again = subprocess.run([script], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert config.read_text().endswith("# edited by the operator\n")
    assert (creds / "webhook_secret").read_text() == WEBHOOK_SECRET + "\n"


LOGROTATE = shutil.which("logrotate")


@pytest.mark.skipif(LOGROTATE is None, reason="logrotate not installed (Debian package logrotate)")
async def test_logrotate_example_rotates_and_the_daemon_writes_on_in_a_new_file(
    tmp_path: Path, sim: SimServer, http: aiohttp.ClientSession
) -> None:
    assert LOGROTATE is not None
    audit = tmp_path / "log" / "audit.ndjson"
    audit.parent.mkdir()
    sim.add_recording({"id": "rec-after", "segments": 1, "codecs": ["opus"]})
    notify = Listener(str(tmp_path / "notify.sock"))
    notify.attach()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cxstream",
        "run",
        "--config",
        str(write_config(tmp_path, sim, audit={"path": str(audit)})),
        env={**os.environ, "NOTIFY_SOCKET": notify.address},
    )
    Daemon.started.append(proc)
    try:
        await notify.wait_for("READY=1")
        # The shipped file, pointed at this daemon: its path, its owner, its pid.
        conf = (ROOT / "config" / "logrotate").read_text()
        conf = conf.replace("/var/log/cxstream/audit.ndjson", str(audit))
        conf = conf.replace("create 0640 cxstream cxstream", "create 0640 root root")
        conf = conf.replace("systemctl kill -s HUP cxstream.service", f"kill -HUP {proc.pid}")
        assert f"kill -HUP {proc.pid}" in conf
        (tmp_path / "logrotate.conf").write_text(conf)
        state = tmp_path / "logrotate.state"
        rotate = await asyncio.create_subprocess_exec(
            LOGROTATE,
            "--force",
            "--state",
            str(state),
            str(tmp_path / "logrotate.conf"),
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await rotate.communicate()
        assert rotate.returncode == 0, err
        await notify.wait_for("RELOADING=1")
        async with asyncio.timeout(10):
            while notify.fields().count("READY=1") < 2:
                await notify.next()
        (rotated,) = [p for p in audit.parent.iterdir() if p != audit]
        assert rotated.name.startswith("audit.ndjson-")  # dateext; compressed a day later
        assert b'"daemon.started"' in rotated.read_bytes()
        started = orjson.loads(
            next(x for x in rotated.read_bytes().splitlines() if b'"daemon.started"' in x)
        )
        body = completed("rec-after")
        url = f"http://{started['webhook']}/webhooks/cxone"
        async with http.post(url, data=body, headers=sign(body)) as resp:
            assert resp.status == 202
        async with asyncio.timeout(20):
            while b'"recording.completed"' not in audit.read_bytes():  # noqa: ASYNC110 - a file
                await asyncio.sleep(0.05)
        assert audit.stat().st_mode & 0o777 == 0o640
        assert b"rec-after" not in rotated.read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await proc.wait() == 0
        notify.close()
