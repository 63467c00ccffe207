"""Contract §6: one TOML file, ``CXSTREAM_<SECTION>_<KEY>`` overrides, secrets from files.

Every case runs twice: through ``cxstream.config.load(path, env)`` (pure: the
environment is an argument) and through the real CLI in a subprocess, where a
bad configuration must be exactly one stderr line naming the key, exit 2, and
never a secret's value.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cxstream.config import Config, ConfigError, HostPort, Secret, load
from tests.harness import ARCHIVE_SECRET, CLIENT_SECRET, WEBHOOK_SECRET, write_config
from tests.ingress import BASIC, PASSWORD, TOKEN, USER

FAKE_SIM = SimpleNamespace(
    base_url="http://127.0.0.1:9/api",
    token_url="http://127.0.0.1:9/auth/token",
    archive_url="http://127.0.0.1:9/archive",
)
# Secret-looking values used by the error cases; none may ever be echoed.
NOT_WHSEC = "plain-secret-value-that-must-not-leak-7f3a"
BAD_B64 = "whsec_" + "not*base64*but*still*secret*7f3a"
SHORT = "whsec_" + base64.b64encode(b"too-short").decode()
SHORT_TOKEN = "short-tok-7f3a"  # under 16 characters
SPACED_TOKEN = "a token with spaces 7f3a"
SECRETS = (
    TOKEN,
    PASSWORD,
    BASIC,
    SHORT_TOKEN,
    SPACED_TOKEN,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET.removeprefix("whsec_"),
    ARCHIVE_SECRET,
    ARCHIVE_SECRET.removeprefix("whsec_"),
    CLIENT_SECRET,
    NOT_WHSEC,
    BAD_B64,
    BAD_B64.removeprefix("whsec_"),
    SHORT,
)
OTHER_WHSEC = "whsec_" + base64.b64encode(b"another-webhook-secret-0123456789").decode()


def _config(tmp: Path, **overrides: dict[str, Any]) -> Path:
    return write_config(tmp, FAKE_SIM, **overrides)


def _drop(path: Path, section: str, key: str) -> Path:
    """Remove ``key`` from ``[section]`` of a file written by ``write_config``."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and line.split(" = ", 1)[0] == key:
            continue
        out.append(line)
    path.write_text("\n".join(out) + "\n")
    return path


def _no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret value leaked into: {text!r}"


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    # Only what the interpreter needs from the outer environment: no stray CXSTREAM_*.
    base = {k: v for k, v in os.environ.items() if not k.startswith("CXSTREAM_")}
    base.pop("CREDENTIALS_DIRECTORY", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cxstream",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**base, **(env or {})},
    )
    try:
        async with asyncio.timeout(30):
            out, err = await proc.communicate()
    except BaseException:
        # Cancelled (a sibling check failed) or timed out: leave no process behind.
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# -- valid configurations ------------------------------------------------------


def test_valid_file(tmp_path: Path) -> None:
    path = _config(tmp_path)
    cfg = load(path, {})
    assert isinstance(cfg, Config)
    assert cfg.origin == str(path)
    assert cfg.webhook.listen == HostPort("127.0.0.1", 0)
    assert cfg.webhook.secret.reveal() == WEBHOOK_SECRET
    assert cfg.webhook.max_body_bytes == 64 * 1024
    assert cfg.cxone.base_url == FAKE_SIM.base_url
    assert cfg.cxone.token_url == FAKE_SIM.token_url
    assert cfg.cxone.client_secret.reveal() == CLIENT_SECRET
    assert cfg.cxone.codecs == ("opus", "pcm")
    assert cfg.streams.concurrency == 4 and isinstance(cfg.streams.concurrency, int)
    assert cfg.streams.idle_timeout_s == 1.0 and isinstance(cfg.streams.idle_timeout_s, float)
    assert cfg.streams.max_attempts == 6
    assert cfg.storage.dir == tmp_path / "recordings"
    assert cfg.storage.state_dir == tmp_path / "state"
    assert cfg.archive.url == FAKE_SIM.archive_url
    assert cfg.archive.secret is not None and cfg.archive.secret.reveal() == ARCHIVE_SECRET
    assert cfg.audit.path == "-"
    assert cfg.admin.listen == HostPort("127.0.0.1", 0)


def test_shipped_example_is_complete_but_for_secrets(tmp_path: Path) -> None:
    # config/cxstream.toml leaves the secrets to the operator; with them it is valid.
    example = Path(__file__).resolve().parent.parent / "config" / "cxstream.toml"
    env = {"CXSTREAM_WEBHOOK_SECRET": WEBHOOK_SECRET, "CXSTREAM_CXONE_CLIENT_SECRET": "x"}
    cfg = load(example, env)
    # Loopback by default (§7); the rest of the example is the operator's to change.
    assert cfg.admin.listen.host in ("127.0.0.1", "::1", "localhost")
    with pytest.raises(ConfigError, match=r"^webhook\.secret: "):
        load(example, {})


def test_env_overrides(tmp_path: Path) -> None:
    path = _config(tmp_path)
    env = {
        "CXSTREAM_STREAMS_CONCURRENCY": "3",
        "CXSTREAM_CXONE_CODECS": "pcm,opus",
        "CXSTREAM_STREAMS_IDLE_TIMEOUT_S": "2.5",
        "CXSTREAM_WEBHOOK_LISTEN": "[::1]:8700",
        "CXSTREAM_ADMIN_LISTEN": "0.0.0.0:8702",
        "CXSTREAM_ARCHIVE_URL": "",
        "CXSTREAM_STORAGE_DIR": str(tmp_path / "elsewhere"),
        "CXSTREAM_WEBHOOK_SECRET": OTHER_WHSEC,
        "CXSTREAM_UNRELATED": "ignored: no such section",
        "NOT_CXSTREAM_STREAMS_CONCURRENCY": "999",
    }
    cfg = load(path, env)
    assert cfg.streams.concurrency == 3
    assert cfg.cxone.codecs == ("pcm", "opus")
    assert cfg.streams.idle_timeout_s == 2.5
    assert cfg.webhook.listen == HostPort("::1", 8700)
    assert str(cfg.webhook.listen) == "[::1]:8700"
    assert cfg.admin.listen == HostPort("0.0.0.0", 8702)
    assert cfg.archive.url == ""
    assert cfg.storage.dir == tmp_path / "elsewhere"
    assert cfg.webhook.secret.reveal() == OTHER_WHSEC
    # Untouched keys keep the file's values.
    assert cfg.streams.max_attempts == 6


def test_listener_and_quarantine_bounds(tmp_path: Path) -> None:
    cfg = load(_config(tmp_path), {})
    hook, admin, storage = cfg.webhook.limits, cfg.admin.limits, cfg.storage
    assert (hook.max_connections, hook.max_connections_per_peer) == (1024, 64)
    assert (hook.keepalive_timeout_s, hook.header_timeout_s) == (15.0, 10.0)
    assert (admin.max_connections, admin.max_connections_per_peer) == (64, 16)
    assert storage.quarantine_max_bytes == 1 << 30
    assert storage.quarantine_min_free_bytes == 256 << 20
    assert storage.quarantine_job_max_bytes == 64 << 20
    env = {
        "CXSTREAM_WEBHOOK_MAX_CONNECTIONS_PER_PEER": "8",
        "CXSTREAM_ADMIN_HEADER_TIMEOUT_S": "2.5",
        "CXSTREAM_STORAGE_QUARANTINE_MAX_BYTES": str(10 << 20),
    }
    cfg = load(_config(tmp_path, webhook={"keepalive_timeout_s": 5}), env)
    assert cfg.webhook.limits.max_connections_per_peer == 8
    assert cfg.webhook.limits.keepalive_timeout_s == 5.0
    assert cfg.admin.limits.header_timeout_s == 2.5
    assert cfg.storage.quarantine_max_bytes == 10 << 20


def test_load_is_pure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _config(tmp_path)
    monkeypatch.setenv("CXSTREAM_STREAMS_CONCURRENCY", "7")
    assert load(path, {}).streams.concurrency == 4
    assert load(path).streams.concurrency == 7  # env=None: the process environment


def test_secret_files(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "webhook").write_text(OTHER_WHSEC + "\n")  # a trailing newline is usual
    (secrets / "client").write_text("client-from-file\n")
    (secrets / "archive").write_text(ARCHIVE_SECRET)
    path = _config(
        tmp_path,
        webhook={"secret_file": str(secrets / "webhook")},
        cxone={"client_secret_file": str(secrets / "client")},
        archive={"secret_file": str(secrets / "archive")},
    )
    for section, key in (("webhook", "secret"), ("cxone", "client_secret"), ("archive", "secret")):
        _drop(path, section, key)
    assert WEBHOOK_SECRET not in path.read_text()
    cfg = load(path, {})
    assert cfg.webhook.secret.reveal() == OTHER_WHSEC
    assert cfg.cxone.client_secret.reveal() == "client-from-file"
    assert cfg.archive.secret is not None and cfg.archive.secret.reveal() == ARCHIVE_SECRET
    # The same through the environment.
    _drop(path, "webhook", "secret_file")
    cfg = load(path, {"CXSTREAM_WEBHOOK_SECRET_FILE": str(secrets / "webhook")})
    assert cfg.webhook.secret.reveal() == OTHER_WHSEC


def test_systemd_credentials(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "webhook_secret").write_text(OTHER_WHSEC + "\n")
    (creds / "cxone_client_secret").write_text("client-from-credential")
    (creds / "archive_secret").write_text(ARCHIVE_SECRET)
    path = _config(tmp_path)
    for section, key in (("webhook", "secret"), ("cxone", "client_secret"), ("archive", "secret")):
        _drop(path, section, key)
    cfg = load(path, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert cfg.webhook.secret.reveal() == OTHER_WHSEC
    assert cfg.cxone.client_secret.reveal() == "client-from-credential"
    assert cfg.archive.secret is not None and cfg.archive.secret.reveal() == ARCHIVE_SECRET
    # Without the credentials the same file is missing its secrets.
    with pytest.raises(ConfigError, match=r"^webhook\.secret: is required"):
        load(path, {})


def test_env_secret_outranks_file_secret_in_either_form(tmp_path: Path) -> None:
    secret_file = tmp_path / "webhook-secret"
    secret_file.write_text(WEBHOOK_SECRET)
    path = _config(tmp_path, webhook={"secret_file": str(secret_file)})
    _drop(path, "webhook", "secret")
    assert load(path, {}).webhook.secret.reveal() == WEBHOOK_SECRET
    # Environment beats file (§6), even when the file names a secret_file.
    cfg = load(path, {"CXSTREAM_WEBHOOK_SECRET": OTHER_WHSEC})
    assert cfg.webhook.secret.reveal() == OTHER_WHSEC
    # And an environment secret_file beats an inline secret in the file.
    other_file = tmp_path / "other-secret"
    other_file.write_text(OTHER_WHSEC)
    path = _config(tmp_path)
    cfg = load(path, {"CXSTREAM_WEBHOOK_SECRET_FILE": str(other_file)})
    assert cfg.webhook.secret.reveal() == OTHER_WHSEC


def test_repr_holds_no_secret(tmp_path: Path) -> None:
    cfg = load(_config(tmp_path), {})
    for text in (repr(cfg), str(cfg), repr(cfg.webhook), repr(cfg.cxone), repr(cfg.archive)):
        _no_secret(text)
        assert "Secret('**********')" in text
    assert str(Secret("x" * 20)) == repr(Secret("x" * 20)) == "Secret('**********')"
    assert f"{cfg.webhook.secret}" == "Secret('**********')"


# -- webhook authentication modes, allow_from, [source] (contract §8, §9) ------------


def test_defaults_keep_todays_behaviour(tmp_path: Path) -> None:
    cfg = load(_config(tmp_path), {})
    assert cfg.webhook.auth == "standard-webhooks"
    assert (cfg.webhook.token, cfg.webhook.user, cfg.webhook.password) == (None, "", None)
    assert cfg.webhook.allow_from == ()
    assert (cfg.source.kind, cfg.source.not_ready_grace_s) == ("cxone-stream", 900.0)


def test_bearer_needs_a_token_and_no_webhook_secret(tmp_path: Path) -> None:
    path = _drop(_config(tmp_path, webhook={"auth": "bearer", "token": TOKEN}), "webhook", "secret")
    cfg = load(path, {})
    assert cfg.webhook.auth == "bearer" and cfg.webhook.secret is None
    assert cfg.webhook.token is not None and cfg.webhook.token.reveal() == TOKEN
    assert TOKEN in cfg.secrets() and WEBHOOK_SECRET not in cfg.secrets()
    _no_secret(repr(cfg))


def test_basic_needs_a_user_and_a_password(tmp_path: Path) -> None:
    path = _config(tmp_path, webhook={"auth": "basic", "user": USER, "password": PASSWORD})
    cfg = load(_drop(path, "webhook", "secret"), {})
    assert (cfg.webhook.auth, cfg.webhook.user) == ("basic", USER)
    assert cfg.webhook.password is not None and cfg.webhook.password.reveal() == PASSWORD
    # The Basic header's own form is masked too, should it ever be quoted.
    assert {PASSWORD, BASIC} <= set(cfg.secrets())


def test_static_credentials_from_files_credentials_and_the_environment(tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    (files / "token").write_text(TOKEN + "\n")
    (files / "password").write_text(PASSWORD + "\n")
    bearer = _config(tmp_path, webhook={"auth": "bearer", "token_file": str(files / "token")})
    assert load(_drop(bearer, "webhook", "secret"), {}).webhook.token == Secret(TOKEN)
    # The environment outranks the file, in either form.
    other = "another-bearer-token-for-tests-99"
    cfg = load(bearer, {"CXSTREAM_WEBHOOK_TOKEN": other})
    assert cfg.webhook.token == Secret(other)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "webhook_token").write_text(TOKEN)
    (creds / "webhook_password").write_text(PASSWORD)
    bare = _drop(_config(tmp_path, webhook={"auth": "bearer"}), "webhook", "secret")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    assert load(bare, env).webhook.token == Secret(TOKEN)
    env |= {"CXSTREAM_WEBHOOK_AUTH": "basic", "CXSTREAM_WEBHOOK_USER": USER}
    assert load(bare, env).webhook.password == Secret(PASSWORD)
    env = {"CXSTREAM_WEBHOOK_AUTH": "basic", "CXSTREAM_WEBHOOK_USER": USER,
           "CXSTREAM_WEBHOOK_PASSWORD_FILE": str(files / "password")}  # fmt: skip
    assert load(bare, env).webhook.password == Secret(PASSWORD)


def test_allow_from_in_either_family_from_the_file_or_the_environment(tmp_path: Path) -> None:
    path = _config(tmp_path, webhook={"allow_from": ["10.0.0.0/8", "192.0.2.7", "fd00::/8"]})
    cfg = load(path, {})
    assert [str(n) for n in cfg.webhook.allow_from] == ["10.0.0.0/8", "192.0.2.7/32", "fd00::/8"]
    env = {"CXSTREAM_WEBHOOK_ALLOW_FROM": " 127.0.0.0/8 , ::1 "}
    assert [str(n) for n in load(path, env).webhook.allow_from] == ["127.0.0.0/8", "::1/128"]
    assert load(path, {"CXSTREAM_WEBHOOK_ALLOW_FROM": ""}).webhook.allow_from == ()


def test_source_kind_and_grace(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        source={"kind": "genesys", "not_ready_grace_s": 60},
        genesys={
            "client_id": "gc-client",
            "client_secret": "gc-secret",
            "region": "mypurecloud.ie",
        },
        cxone={"access_key_id": "ak-id", "access_key_secret": "ak-secret"},
    )
    cfg = load(path, {})
    assert (cfg.source.kind, cfg.source.not_ready_grace_s) == ("genesys", 60.0)
    assert cfg.genesys is not None
    assert (cfg.genesys.api_url, cfg.genesys.login_url) == (
        "https://api.mypurecloud.ie",
        "https://login.mypurecloud.ie",
    )
    env = {"CXSTREAM_SOURCE_KIND": "cxone-playback"}
    playback = load(path, env)
    assert playback.source.kind == "cxone-playback" and playback.genesys is None
    assert playback.cxone.rate_limit_requests == 150  # the documented Media Playback quota


# -- bad configurations ---------------------------------------------------------


@dataclass
class Bad:
    """One bad configuration: the file's overrides (or raw text), env, the key named."""

    id: str
    key: str
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    drop: tuple[tuple[str, str], ...] = ()
    text: bytes | None = None  # the whole file, instead of write_config's
    missing: bool = False  # point at a file that does not exist
    replace: tuple[str, str] | None = None  # edit write_config's text (for nan, inf)


BAD = [
    Bad("concurrency-env-not-numeric", "streams.concurrency",
        env={"CXSTREAM_STREAMS_CONCURRENCY": "three"}),
    Bad("concurrency-toml-string", "streams.concurrency", {"streams": {"concurrency": "3x"}}),
    Bad("concurrency-zero", "streams.concurrency", {"streams": {"concurrency": 0}}),
    Bad("concurrency-too-big", "streams.concurrency", {"streams": {"concurrency": 4097}}),
    Bad("concurrency-fraction", "streams.concurrency", {"streams": {"concurrency": 1.5}}),
    Bad("concurrency-bool", "streams.concurrency", {"streams": {"concurrency": True}}),
    Bad("concurrency-env-float", "streams.concurrency",
        env={"CXSTREAM_STREAMS_CONCURRENCY": "2.0"}),
    Bad("concurrency-nan", "streams.concurrency", replace=("concurrency = 4", "concurrency = nan")),
    Bad("concurrency-inf", "streams.concurrency", replace=("concurrency = 4", "concurrency = inf")),
    Bad("idle-timeout-inf", "streams.idle_timeout_s",
        replace=("idle_timeout_s = 1.0", "idle_timeout_s = -inf")),
    Bad("idle-timeout-negative", "streams.idle_timeout_s", {"streams": {"idle_timeout_s": -1}}),
    Bad("idle-timeout-env-nan", "streams.idle_timeout_s",
        env={"CXSTREAM_STREAMS_IDLE_TIMEOUT_S": "nan"}),
    Bad("max-attempts-list", "streams.max_attempts", {"streams": {"max_attempts": [3]}}),
    Bad("max-body-too-small", "webhook.max_body_bytes", {"webhook": {"max_body_bytes": 10}}),
    Bad("listen-no-port", "webhook.listen", {"webhook": {"listen": "127.0.0.1"}}),
    Bad("listen-no-host", "webhook.listen", {"webhook": {"listen": ":8600"}}),
    Bad("listen-port-range", "webhook.listen", {"webhook": {"listen": "127.0.0.1:70000"}}),
    Bad("listen-not-string", "webhook.listen", {"webhook": {"listen": 8600}}),
    Bad("listen-unbalanced-bracket", "webhook.listen", {"webhook": {"listen": "[::1:8600"}}),
    Bad("admin-listen-garbage", "admin.listen", env={"CXSTREAM_ADMIN_LISTEN": "localhost"}),
    Bad("base-url-scheme", "cxone.base_url", {"cxone": {"base_url": "ftp://example.com"}}),
    Bad("base-url-not-url", "cxone.base_url", {"cxone": {"base_url": "not a url"}}),
    Bad("base-url-ipv6-broken", "cxone.base_url", {"cxone": {"base_url": "http://[::1"}}),
    Bad("base-url-bad-port", "cxone.base_url", {"cxone": {"base_url": "http://h:port/x"}}),
    Bad("base-url-no-host", "cxone.base_url", {"cxone": {"base_url": "http://:80/"}}),
    Bad("token-url-empty", "cxone.token_url", env={"CXSTREAM_CXONE_TOKEN_URL": ""}),
    Bad("archive-url-scheme", "archive.url", {"archive": {"url": "mailto:ops@example.com"}}),
    Bad("codec-unknown", "cxone.codecs", {"cxone": {"codecs": ["opus", "mp3"]}}),
    Bad("codec-unknown-env", "cxone.codecs", env={"CXSTREAM_CXONE_CODECS": "pcm,flac"}),
    Bad("codecs-empty", "cxone.codecs", {"cxone": {"codecs": []}}),
    Bad("codecs-twice", "cxone.codecs", {"cxone": {"codecs": ["opus", "opus"]}}),
    Bad("unknown-key", "streams.bogus", {"streams": {"bogus": 1}}),
    Bad("unknown-key-typo-of-secret", "webhook.secrets", {"webhook": {"secrets": NOT_WHSEC}}),
    Bad("unknown-key-env", "streams.concurency", env={"CXSTREAM_STREAMS_CONCURENCY": "3"}),
    Bad("unknown-section", "bogus", {"bogus": {"x": 1}}),
    Bad("section-not-table", "webhook", text=b'webhook = "127.0.0.1:8600"\n'),
    Bad("missing-webhook-secret", "webhook.secret", drop=(("webhook", "secret"),)),
    Bad("missing-client-secret", "cxone.client_secret", drop=(("cxone", "client_secret"),)),
    Bad("missing-base-url", "cxone.base_url", drop=(("cxone", "base_url"),)),
    Bad("missing-secret-file", "webhook.secret_file",
        {"webhook": {"secret_file": "/nonexistent/cxstream/secret"}}),
    Bad("secret-not-whsec", "webhook.secret", {"webhook": {"secret": NOT_WHSEC}}),
    Bad("secret-not-whsec-env", "webhook.secret", env={"CXSTREAM_WEBHOOK_SECRET": NOT_WHSEC}),
    Bad("secret-bad-base64", "webhook.secret", {"webhook": {"secret": BAD_B64}}),
    Bad("secret-too-short", "webhook.secret", {"webhook": {"secret": SHORT}}),
    Bad("secret-not-string", "webhook.secret", {"webhook": {"secret": 42}}),
    Bad("archive-secret-not-whsec", "archive.secret", {"archive": {"secret": NOT_WHSEC}}),
    Bad("archive-url-without-secret", "archive.secret", drop=(("archive", "secret"),)),
    Bad("state-dir-is-dir", "storage.state_dir", env={"CXSTREAM_STORAGE_STATE_DIR": "/tmp/x",
                                                      "CXSTREAM_STORAGE_DIR": "/tmp/x/"}),
    Bad("storage-dir-nul", "storage.dir", {"storage": {"dir": "/tmp/a\u0000b"}}),
    Bad("audit-path-empty", "audit.path", {"audit": {"path": ""}}),
    Bad("max-connections-zero", "webhook.max_connections", {"webhook": {"max_connections": 0}}),
    Bad("per-peer-env-not-numeric", "admin.max_connections_per_peer",
        env={"CXSTREAM_ADMIN_MAX_CONNECTIONS_PER_PEER": "many"}),
    Bad("header-timeout-zero", "webhook.header_timeout_s", {"webhook": {"header_timeout_s": 0}}),
    Bad("keepalive-too-long", "admin.keepalive_timeout_s",
        {"admin": {"keepalive_timeout_s": 7200}}),
    Bad("quarantine-cap-tiny", "storage.quarantine_max_bytes",
        {"storage": {"quarantine_max_bytes": 1000}}),
    Bad("quarantine-floor-negative", "storage.quarantine_min_free_bytes",
        env={"CXSTREAM_STORAGE_QUARANTINE_MIN_FREE_BYTES": "-1"}),
    Bad("toml-malformed", "config",
        text=f'[webhook]\nsecret = "{WEBHOOK_SECRET}\n'.encode()),
    Bad("toml-unquoted-secret", "config", text=f"[webhook]\nsecret = {NOT_WHSEC}\n".encode()),
    Bad("toml-duplicate-key", "config",
        text=f'[webhook]\nsecret = "{WEBHOOK_SECRET}"\nsecret = "{NOT_WHSEC}"\n'.encode()),
    Bad("toml-not-utf8", "config", text=b'[webhook]\nsecret = "whsec_\xff\xfe"\n'),
    Bad("file-missing", "config", missing=True),
    Bad("auth-unknown", "webhook.auth", {"webhook": {"auth": "hmac"}}),
    Bad("auth-env-unknown", "webhook.auth", env={"CXSTREAM_WEBHOOK_AUTH": "Bearer"}),
    Bad("bearer-without-token", "webhook.token", {"webhook": {"auth": "bearer"}}),
    Bad("bearer-token-short", "webhook.token",
        {"webhook": {"auth": "bearer", "token": SHORT_TOKEN}}),
    Bad("bearer-token-spaces", "webhook.token",
        {"webhook": {"auth": "bearer", "token": SPACED_TOKEN}}),
    Bad("bearer-token-not-string", "webhook.token", {"webhook": {"auth": "bearer", "token": 7}}),
    Bad("bearer-token-file-missing", "webhook.token_file",
        {"webhook": {"auth": "bearer", "token_file": "/nonexistent/cxstream/token"}}),
    Bad("basic-without-user", "webhook.user", {"webhook": {"auth": "basic", "password": PASSWORD}}),
    Bad("basic-user-colon", "webhook.user",
        {"webhook": {"auth": "basic", "user": "a:b", "password": PASSWORD}}),
    Bad("basic-without-password", "webhook.password", {"webhook": {"auth": "basic", "user": USER}}),
    Bad("basic-password-short", "webhook.password",
        {"webhook": {"auth": "basic", "user": USER, "password": SHORT_TOKEN}}),
    Bad("standard-without-secret", "webhook.secret", {"webhook": {"token": TOKEN}},
        drop=(("webhook", "secret"),)),
    Bad("allow-from-not-cidr", "webhook.allow_from", {"webhook": {"allow_from": ["10.0.0.300/8"]}}),
    Bad("allow-from-host-bits", "webhook.allow_from", {"webhook": {"allow_from": ["10.0.0.1/8"]}}),
    Bad("allow-from-not-list", "webhook.allow_from", {"webhook": {"allow_from": 10}}),
    Bad("allow-from-item-number", "webhook.allow_from", {"webhook": {"allow_from": [10]}}),
    Bad("allow-from-env-hostname", "webhook.allow_from",
        env={"CXSTREAM_WEBHOOK_ALLOW_FROM": "10.0.0.0/8,proxy.example.com"}),
    Bad("source-kind-unknown", "source.kind", {"source": {"kind": "avaya"}}),
    Bad("source-grace-negative", "source.not_ready_grace_s", {"source": {"not_ready_grace_s": -1}}),
    Bad("source-unknown-key", "source.formats", {"source": {"formats": ["WAV"]}}),
]  # fmt: skip


def _materialise(case: Bad, tmp: Path) -> tuple[Path, dict[str, str]]:
    if case.missing:
        return tmp / "no-such-config.toml", dict(case.env)
    if case.text is not None:
        path = tmp / "cxstream.toml"
        path.write_bytes(case.text)
        return path, dict(case.env)
    path = _config(tmp, **case.overrides)
    for section, key in case.drop:
        _drop(path, section, key)
    if case.replace is not None:
        old, new = case.replace
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))
    return path, dict(case.env)


def _check_message(case: Bad, line: str) -> None:
    assert "\n" not in line.strip(), line
    assert line.startswith(f"{case.key}: "), line
    _no_secret(line)


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_value_load(case: Bad, tmp_path: Path) -> None:
    path, env = _materialise(case, tmp_path)
    with pytest.raises(ConfigError) as info:
        load(path, env)
    assert info.value.key == case.key
    _check_message(case, str(info.value))


async def test_bad_values_cli(tmp_path: Path) -> None:
    """Every BAD case through ``check-config``: one stderr line naming the key, exit 2."""
    gate = asyncio.Semaphore(4)

    async def one(i: int, case: Bad) -> None:
        tmp = tmp_path / str(i)
        tmp.mkdir()
        path, env = _materialise(case, tmp)
        async with gate:
            code, out, err = await _cli("check-config", "--config", str(path), env=env)
        assert code == 2, (case.id, code, err)
        assert out == "", (case.id, out)
        lines = err.splitlines()
        assert len(lines) == 1, (case.id, err)
        assert lines[0].startswith(f"cxstream: config: {case.key}: "), (case.id, err)
        assert "Traceback" not in err
        _no_secret(err)

    # A TaskGroup, not gather: on a failure the other checks are cancelled and awaited.
    async with asyncio.TaskGroup() as group:
        for i, case in enumerate(BAD):
            group.create_task(one(i, case))


async def test_check_config_ok(tmp_path: Path) -> None:
    path = _config(tmp_path)
    code, out, err = await _cli("check-config", "--config", str(path))
    assert (code, out) == (0, "")
    assert err.strip() == f"cxstream: config ok: {path}"
    # An environment override is applied by the CLI too, and can break the file.
    code, _, err = await _cli(
        "check-config", "--config", str(path), env={"CXSTREAM_STREAMS_CONCURRENCY": "0"}
    )
    assert code == 2
    assert err.startswith("cxstream: config: streams.concurrency: ")
    # Secrets from systemd credentials, through the real process environment.
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "webhook_secret").write_text(WEBHOOK_SECRET)
    _drop(path, "webhook", "secret")
    code, _, err = await _cli(
        "check-config", "--config", str(path), env={"CREDENTIALS_DIRECTORY": str(creds)}
    )
    assert code == 0, err


async def test_check_config_without_file_uses_defaults_and_env() -> None:
    code, out, err = await _cli("check-config")
    assert (code, out) == (2, "")
    assert err.splitlines() == ["cxstream: config: webhook.secret: is required (or secret_file)"]
    env = {
        "CXSTREAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CXSTREAM_CXONE_BASE_URL": FAKE_SIM.base_url,
        "CXSTREAM_CXONE_TOKEN_URL": FAKE_SIM.token_url,
        "CXSTREAM_CXONE_CLIENT_ID": "cxstream",
        "CXSTREAM_CXONE_CLIENT_SECRET": CLIENT_SECRET,
    }
    code, out, err = await _cli("check-config", env=env)
    assert code == 0, err
    assert err.strip() == "cxstream: config ok: <defaults>"
    _no_secret(err)


@pytest.mark.parametrize(
    "case",
    [c for c in BAD if c.id in ("secret-not-whsec", "concurrency-zero", "toml-malformed")],
    ids=lambda c: c.id,
)
async def test_run_with_bad_config_exits_2(case: Bad, tmp_path: Path) -> None:
    path, env = _materialise(case, tmp_path)
    code, out, err = await _cli("run", "--config", str(path), env=env)
    assert code == 2
    assert out == ""  # not one audit line: the daemon never started
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cxstream: config: {case.key}: "), err
    _no_secret(err)


# -- property: load() answers ConfigError or a Config, nothing else ---------------

_KEYS = [
    "CXSTREAM_STREAMS_CONCURRENCY",
    "CXSTREAM_STREAMS_IDLE_TIMEOUT_S",
    "CXSTREAM_WEBHOOK_LISTEN",
    "CXSTREAM_ADMIN_LISTEN",
    "CXSTREAM_CXONE_BASE_URL",
    "CXSTREAM_CXONE_CODECS",
    "CXSTREAM_ARCHIVE_URL",
    "CXSTREAM_WEBHOOK_SECRET",
    "CXSTREAM_STORAGE_DIR",
    "CXSTREAM_AUDIT_PATH",
]


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _config(tmp_path_factory.mktemp("prop"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env=st.dictionaries(st.sampled_from(_KEYS), st.text(max_size=40), max_size=3))
def test_load_never_raises_anything_but_config_error(
    config_file: Path, env: dict[str, str]
) -> None:
    try:
        load(config_file, env)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        _no_secret(str(exc))
