"""cxstream check-config: the new keys, as README and contract §8-§9 name them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from common import CXSTREAM, Checks, whsec, write_toml

TOKEN = "tok_" + "A1b2C3d4E5f6G7h8J9k0"
PW = "pw-Zx9Yw8Vu7Ts6Rq5P"


def _base(d: Path) -> dict[str, dict[str, Any]]:
    return {
        "storage": {"dir": str(d / "rec"), "state_dir": str(d / "state")},
        "audit": {"path": "-"},
    }


def _cases(d: Path) -> list[tuple[str, dict[str, dict[str, Any]], int, str]]:
    playback = {"issuer": "https://cxone.niceincontact.com", "access_key_id": "AKID", "access_key_secret": "aks-secret-value-1",
                "client_id": "app", "client_secret": "cs-secret-value-1"}
    genesys = {"region": "mypurecloud.ie", "client_id": "cid", "client_secret": "gcs-secret-value-1"}
    bearer = {"auth": "bearer", "token": TOKEN}
    basic = {"auth": "basic", "user": "studio", "password": PW}
    out: list[tuple[str, dict[str, dict[str, Any]], int, str]] = [
        ("valid cxone-playback + bearer (no base_url/token_url)", {"webhook": bearer, "source": {"kind": "cxone-playback"}, "cxone": playback}, 0, ""),
        ("valid genesys + basic (region only)", {"webhook": basic, "source": {"kind": "genesys"}, "genesys": genesys}, 0, ""),
        ("valid genesys with api_url/login_url and formats", {"webhook": basic, "source": {"kind": "genesys", "not_ready_grace_s": 60},
         "genesys": {**genesys, "api_url": "http://127.0.0.1:9", "login_url": "http://127.0.0.1:9", "formats": ["WAV"]}}, 0, ""),
        ("bearer without token", {"webhook": {"auth": "bearer"}, "source": {"kind": "cxone-playback"}, "cxone": playback}, 2, "webhook.token"),
        ("bearer token too short", {"webhook": {"auth": "bearer", "token": "short"}, "source": {"kind": "cxone-playback"}, "cxone": playback}, 2, "webhook.token"),
        ("basic without password", {"webhook": {"auth": "basic", "user": "studio"}, "source": {"kind": "genesys"}, "genesys": genesys}, 2, "webhook.password"),
        ("basic without user", {"webhook": {"auth": "basic", "password": PW}, "source": {"kind": "genesys"}, "genesys": genesys}, 2, "webhook.user"),
        ("basic user with ':'", {"webhook": {"auth": "basic", "user": "a:b", "password": PW}, "source": {"kind": "genesys"}, "genesys": genesys}, 2, "webhook.user"),
        ("unknown webhook.auth", {"webhook": {"auth": "hmac", "token": TOKEN}, "source": {"kind": "genesys"}, "genesys": genesys}, 2, "webhook.auth"),
        ("unknown source.kind", {"webhook": bearer, "source": {"kind": "five9"}}, 2, "source.kind"),
        ("playback without access_key_id", {"webhook": bearer, "source": {"kind": "cxone-playback"},
         "cxone": {k: v for k, v in playback.items() if k != "access_key_id"}}, 2, "cxone.access_key_id"),
        ("playback without access_key_secret", {"webhook": bearer, "source": {"kind": "cxone-playback"},
         "cxone": {k: v for k, v in playback.items() if k != "access_key_secret"}}, 2, "cxone.access_key_secret"),
        ("genesys without client_secret", {"webhook": basic, "source": {"kind": "genesys"},
         "genesys": {k: v for k, v in genesys.items() if k != "client_secret"}}, 2, "genesys.client_secret"),
        ("genesys unknown format", {"webhook": basic, "source": {"kind": "genesys"}, "genesys": {**genesys, "formats": ["FLAC"]}}, 2, "genesys.formats"),
        ("negative not_ready_grace_s", {"webhook": basic, "source": {"kind": "genesys", "not_ready_grace_s": -1}, "genesys": genesys}, 2, "source.not_ready_grace_s"),
        ("standard-webhooks without secret", {"webhook": {"auth": "standard-webhooks"}, "source": {"kind": "genesys"}, "genesys": genesys}, 2, "webhook.secret"),
    ]
    return out


async def run(d: Path, checks: Checks) -> None:
    secrets_ = [TOKEN, PW, "aks-secret-value-1", "cs-secret-value-1", "gcs-secret-value-1"]
    for i, (what, cfg, want_rc, key) in enumerate(_cases(d)):
        p = d / f"c{i}.toml"
        write_toml(p, {**_base(d), **cfg})
        r = subprocess.run([str(CXSTREAM), "check-config", "--config", str(p)], capture_output=True, text=True, timeout=60,
                           env={"PATH": "/usr/bin:/bin"})
        err = r.stderr.strip()
        ok = r.returncode == want_rc and r.stdout == "" and len(err.splitlines()) == 1 and "Traceback" not in err
        if want_rc == 2:
            ok = ok and key in err
        else:
            ok = ok and "config ok" in err
        ok = ok and not any(s in err for s in secrets_)
        checks.check(f"config: {what} -> exit {want_rc}" + (f" naming {key}" if key else ""), ok, f"rc={r.returncode} stderr={err[:200]!r}")
    _ = whsec
