"""The shipped unit, checked by systemd's own tools where they exist (Debian's ``systemd``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

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
    if Path("/opt/cxstream/bin/cxstream").exists():
        assert done.returncode == 0, lines


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
