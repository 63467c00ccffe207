"""Configuration: one TOML file, environment overrides, secrets from files.

Precedence, lowest to highest: built-in defaults, the TOML file,
``CXSTREAM_<SECTION>_<KEY>`` environment variables. A secret may come instead
from ``<key>_file`` (path) or from ``$CREDENTIALS_DIRECTORY/<section>_<key>``
(a systemd credential), so it never has to sit in the unit or the file.
Everything is validated once, at start, into frozen dataclasses.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cxstream.formats.registry import STREAM_CODECS as CODECS

AUTH_MODES = ("standard-webhooks", "bearer", "basic")
SOURCE_KINDS = ("cxone-stream", "cxone-playback", "genesys")
# Shorter static credentials are guessable; a signature secret is checked by its own rule.
MIN_CREDENTIAL_CHARS = 16
# RFC 6750's b64token: what a Bearer header may carry without quoting.
_B64TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """A bad configuration value; ``str()`` is one line naming the key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key


class Secret:
    """A string that refuses to show itself in reprs, logs and tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """What one client may hold of a listener (see listeners.py)."""

    max_connections: int = 1024
    max_connections_per_peer: int = 64
    keepalive_timeout_s: float = 15.0
    header_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    listen: HostPort
    secret: Secret | None  # set, and only used, with auth = "standard-webhooks"
    max_body_bytes: int = 64 * 1024
    body_timeout_s: float = 10.0
    drain_grace_s: float = 1.0
    auth: str = "standard-webhooks"
    token: Secret | None = None  # auth = "bearer"
    user: str = ""  # auth = "basic"
    password: Secret | None = None  # auth = "basic"
    allow_from: tuple[IPNetwork, ...] = ()  # empty: any peer
    limits: ListenerLimits = ListenerLimits()


@dataclass(frozen=True, slots=True)
class CxoneConfig:
    base_url: str  # "" for cxone-playback: discovered from the issuer
    token_url: str  # "" for cxone-playback: discovered from the issuer
    client_id: str
    client_secret: Secret
    codecs: tuple[str, ...]
    connect_timeout_s: float = 10.0
    token_refresh_margin_s: float = 60.0
    max_control_bytes: int = 1024 * 1024
    max_segments: int = 20_000
    issuer: str = "https://cxone.niceincontact.com"
    access_key_id: str = ""
    access_key_secret: Secret | None = None
    # One token bucket for every CXone API call (0 requests: no limit).
    rate_limit_requests: int = 0
    rate_limit_window_s: float = 300.0


GENESYS_FORMATS = ("OGG_OPUS", "WAV")


@dataclass(frozen=True, slots=True)
class GenesysConfig:
    api_url: str  # https://api.<region>, or the override
    login_url: str  # https://login.<region>, or the override
    client_id: str
    client_secret: Secret | None
    formats: tuple[str, ...] = GENESYS_FORMATS


@dataclass(frozen=True, slots=True)
class StreamsConfig:
    concurrency: int
    idle_timeout_s: float
    max_attempts: int
    throttle_budget_s: float = 600.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 60.0
    checkpoint_bytes: int = 4 * 1024 * 1024
    chunk_bytes: int = 256 * 1024
    max_queued: int = 0  # 0: no cap


@dataclass(frozen=True, slots=True)
class StorageConfig:
    dir: Path
    state_dir: Path
    min_free_bytes: int = 256 * 1024 * 1024
    quarantine_max_bytes: int = 1 << 30
    quarantine_min_free_bytes: int = 256 << 20
    quarantine_job_max_bytes: int = 64 << 20
    backend: str = "fs"  # fs | s3
    bucket: str = ""
    prefix: str = ""  # "" or ends with "/"
    endpoint: str = ""
    region: str = ""
    access_key_id: str = ""
    secret_access_key: Secret | None = None
    retention_mode: str = ""  # "" | GOVERNANCE | COMPLIANCE
    retention_days: int = 0
    legal_hold: bool = False
    sse: str = ""  # "" | AES256 | aws:kms
    kms_key_id: str = ""
    spool_dir: Path | None = None

    @property
    def spool(self) -> Path:
        """Where an s3 node verifies a recording before it uploads it."""
        return self.spool_dir or self.state_dir / "spool"


@dataclass(frozen=True, slots=True)
class JournalConfig:
    backend: str = "sqlite"  # sqlite | postgres
    dsn: Secret | None = None
    node: str = ""
    lease_s: float = 30.0


@dataclass(frozen=True, slots=True)
class ArchiveConfig:
    url: str
    secret: Secret | None
    timeout_s: float = 30.0
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 300.0
    backlog_report_s: float = 60.0


@dataclass(frozen=True, slots=True)
class AuditConfig:
    path: str


@dataclass(frozen=True, slots=True)
class AdminConfig:
    listen: HostPort
    limits: ListenerLimits = ListenerLimits(max_connections=64, max_connections_per_peer=16)


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """Which platform API the fetcher speaks (contract §8)."""

    kind: str = "cxone-stream"
    not_ready_grace_s: float = 900.0


@dataclass(frozen=True, slots=True)
class Config:
    webhook: WebhookConfig
    cxone: CxoneConfig
    streams: StreamsConfig
    storage: StorageConfig
    archive: ArchiveConfig
    audit: AuditConfig
    admin: AdminConfig
    journal: JournalConfig = field(default_factory=JournalConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    genesys: GenesysConfig | None = None
    origin: str = field(default="<defaults>", compare=False)  # the file read, for messages

    def secrets(self) -> list[str]:
        """Every secret value this configuration holds, for the audit redactor to mask."""
        wh = self.webhook
        held = [wh.secret, wh.token, wh.password, self.cxone.client_secret, self.archive.secret]
        held += [self.cxone.access_key_secret, self.journal.dsn, self.storage.secret_access_key]
        if self.genesys is not None:
            held.append(self.genesys.client_secret)
        out = [v.reveal() for v in held if v]
        if wh.password is not None:
            # What a Basic header carries: masked too, should one ever be quoted.
            out.append(base64.b64encode(f"{wh.user}:{wh.password.reveal()}".encode()).decode())
        if self.journal.dsn:
            out += _dsn_password(self.journal.dsn.reveal())
        return out


DEFAULTS: dict[str, dict[str, Any]] = {
    "webhook": {
        "listen": "127.0.0.1:8600",
        "max_body_bytes": 65536,
        "body_timeout_s": 10.0,
        "drain_grace_s": 1.0,
        "auth": "standard-webhooks",
        "user": "",
        "allow_from": [],
        "max_connections": 1024,
        "max_connections_per_peer": 64,
        "keepalive_timeout_s": 15.0,
        "header_timeout_s": 10.0,
    },
    "source": {"kind": "cxone-stream", "not_ready_grace_s": 900.0},
    "cxone": {
        "codecs": ["opus", "pcm"],
        "connect_timeout_s": 10.0,
        "token_refresh_margin_s": 60.0,
        "max_control_bytes": 1024 * 1024,
        "max_segments": 20_000,
        "issuer": "https://cxone.niceincontact.com",
        "base_url": "",
        "token_url": "",
        "client_id": "",
        "access_key_id": "",
        "rate_limit_requests": None,
        "rate_limit_window_s": 300.0,
    },
    "genesys": {
        "region": "mypurecloud.com",
        "api_url": "",
        "login_url": "",
        "client_id": "",
        "formats": list(GENESYS_FORMATS),
    },
    "streams": {
        "concurrency": 8,
        "idle_timeout_s": 15.0,
        "max_attempts": 10,
        "throttle_budget_s": 600.0,
        "backoff_base_s": 0.5,
        "backoff_cap_s": 60.0,
        "checkpoint_bytes": 4 * 1024 * 1024,
        "chunk_bytes": 256 * 1024,
        "max_queued": 0,
    },
    "storage": {
        "dir": "/var/lib/cxstream/recordings",
        "state_dir": "/var/lib/cxstream/state",
        "min_free_bytes": 256 * 1024 * 1024,
        "backend": "fs",
        "bucket": "",
        "prefix": "",
        "endpoint": "",
        "region": "",
        "access_key_id": "",
        "retention_mode": "",
        "retention_days": 0,
        "legal_hold": False,
        "sse": "",
        "kms_key_id": "",
        "spool_dir": "",
        "quarantine_max_bytes": 1 << 30,
        "quarantine_min_free_bytes": 256 << 20,
        "quarantine_job_max_bytes": 64 << 20,
    },
    "journal": {"backend": "sqlite", "node": "", "lease_s": 30.0},
    "archive": {
        "url": "",
        "timeout_s": 30.0,
        "backoff_base_s": 1.0,
        "backoff_cap_s": 300.0,
        "backlog_report_s": 60.0,
    },
    "audit": {"path": "-"},
    "admin": {
        "listen": "127.0.0.1:8602",
        "max_connections": 64,
        "max_connections_per_peer": 16,
        "keepalive_timeout_s": 15.0,
        "header_timeout_s": 10.0,
    },
}
SECRETS = {
    ("webhook", "secret"),
    ("webhook", "token"),
    ("webhook", "password"),
    ("cxone", "client_secret"),
    ("cxone", "access_key_secret"),
    ("genesys", "client_secret"),
    ("archive", "secret"),
    ("journal", "dsn"),
    ("storage", "secret_access_key"),
}
_ENV_PREFIX = "CXSTREAM_"
_PLACEHOLDER = "whsec_" + base64.b64encode(bytes(32)).decode()


def _merge_env(raw: dict[str, dict[str, Any]], env: Mapping[str, str]) -> None:
    from_env: set[tuple[str, str]] = set()
    for name, value in env.items():
        if not name.startswith(_ENV_PREFIX):
            continue
        rest = name[len(_ENV_PREFIX) :].lower()
        for section in DEFAULTS:
            if rest.startswith(section + "_") and len(rest) > len(section) + 1:
                key = rest[len(section) + 1 :]
                raw.setdefault(section, {})[key] = value
                from_env.add((section, key))
                break
    # The environment outranks the file for a secret in either form: without
    # this, a TOML `<key>_file` would silently win over CXSTREAM_<SECTION>_<KEY>
    # (and a TOML `<key>` over CXSTREAM_<SECTION>_<KEY>_FILE would be ignored).
    for section, key in SECRETS:
        inline, path = (section, key) in from_env, (section, f"{key}_file") in from_env
        if inline != path:
            raw[section].pop(f"{key}_file" if inline else key, None)


def _read_secret_file(key: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        # The path is not secret; the reason is the OS's, never the content.
        raise ConfigError(
            key, f"cannot read secret file {path!r}: {exc.__class__.__name__}"
        ) from None


def _resolve_secrets(
    raw: dict[str, dict[str, Any]],
    env: Mapping[str, str],
    only: frozenset[tuple[str, str]] | set[tuple[str, str]] = SECRETS,
) -> None:
    creds = env.get("CREDENTIALS_DIRECTORY")
    for section, key in only:
        values = raw.setdefault(section, {})
        file_key = f"{key}_file"
        if values.get(file_key):
            values[key] = _read_secret_file(f"{section}.{file_key}", str(values.pop(file_key)))
        elif creds and not values.get(key):
            cred = Path(creds) / f"{section}_{key}"
            if cred.is_file():
                values[key] = _read_secret_file(f"{section}.{key}", str(cred))
        values.pop(file_key, None)


_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _dsn_password(dsn: str) -> list[str]:
    try:
        from psycopg.conninfo import conninfo_to_dict

        password = conninfo_to_dict(dsn).get("password")
    except Exception:
        return []
    return [str(password)] if password else []


def _journal(sec: _Section) -> JournalConfig:
    backend = sec.choice("backend", ("sqlite", "postgres"))
    node = sec.string("node").strip() or socket.gethostname()
    if (backend == "postgres" or sec.values.get("node")) and not _NODE.fullmatch(node):
        raise ConfigError(sec.key("node"), f"must be 1-63 of A-Z a-z 0-9 . _ -, got {node!r}")
    dsn = sec.secret("dsn")
    if backend == "postgres":
        if dsn is None:
            raise ConfigError(sec.key("dsn"), "is required for postgres (or dsn_file)")
        try:
            from psycopg.conninfo import conninfo_to_dict
        except ImportError:
            raise ConfigError(
                sec.key("backend"), "postgres needs psycopg: pip install 'cxstream[postgres]'"
            ) from None
        try:
            conninfo_to_dict(dsn.reveal())
        except Exception:
            # The DSN may hold a password: say what is wrong, never what it is.
            raise ConfigError(sec.key("dsn"), "is not a valid libpq connection string") from None
    return JournalConfig(
        backend=backend, dsn=dsn, node=node, lease_s=sec.number("lease_s", float, 2, 3600)
    )


def _storage(sec: _Section, data_dir: Path, state_dir: Path) -> StorageConfig:
    backend = sec.choice("backend", ("fs", "s3"))
    mode = sec.choice("retention_mode", ("", "GOVERNANCE", "COMPLIANCE"))
    days = sec.number("retention_days", int, 0, 36500)
    if mode and not days:
        raise ConfigError(sec.key("retention_days"), f"must be at least 1 with mode {mode}")
    if days and not mode:
        raise ConfigError(sec.key("retention_mode"), "is required when retention_days is set")
    sse = sec.choice("sse", ("", "AES256", "aws:kms"))
    kms_key_id = sec.string("kms_key_id").strip()
    if kms_key_id and sse != "aws:kms":
        raise ConfigError(sec.key("kms_key_id"), "needs storage.sse = 'aws:kms'")
    prefix = sec.string("prefix").strip()
    if prefix.startswith("/") or ".." in prefix.split("/") or "\x00" in prefix:
        raise ConfigError(sec.key("prefix"), "must be a relative key prefix without '..'")
    if prefix and not prefix.endswith("/"):
        prefix += "/"  # "recordings" means recordings/2026/..., not recordings2026/...
    key_id, secret = sec.string("access_key_id").strip(), sec.secret("secret_access_key")
    if bool(key_id) != bool(secret):
        missing = "secret_access_key" if key_id else "access_key_id"
        raise ConfigError(sec.key(missing), "is required with the other (or set neither)")
    bucket, endpoint = sec.string("bucket").strip(), sec.url("endpoint", optional=True)
    region = sec.string("region").strip()
    if backend == "s3":
        if not _BUCKET.fullmatch(bucket):
            raise ConfigError(sec.key("bucket"), f"expected an S3 bucket name, got {bucket!r}")
        if not endpoint and not region:
            raise ConfigError(sec.key("region"), "is required when storage.endpoint is empty")
        try:
            import aiobotocore  # noqa: F401
        except ImportError:
            raise ConfigError(
                sec.key("backend"), "s3 needs aiobotocore: pip install 'cxstream[s3]'"
            ) from None
    spool = sec.path("spool_dir").strip()
    return StorageConfig(
        dir=data_dir,
        state_dir=state_dir,
        backend=backend,
        bucket=bucket,
        prefix=prefix,
        endpoint=endpoint,
        region=region,
        access_key_id=key_id,
        secret_access_key=secret,
        retention_mode=mode,
        retention_days=days,
        legal_hold=sec.boolean("legal_hold"),
        sse=sse,
        kms_key_id=kms_key_id,
        spool_dir=Path(spool) if spool else None,
        min_free_bytes=sec.number("min_free_bytes", int, 0, 1 << 50),
        quarantine_max_bytes=sec.number("quarantine_max_bytes", int, 1 << 20, 1 << 50),
        quarantine_min_free_bytes=sec.number("quarantine_min_free_bytes", int, 0, 1 << 50),
        quarantine_job_max_bytes=sec.number("quarantine_job_max_bytes", int, 0, 1 << 50),
    )


class _Section:
    """Typed reads from one section, each failure naming its key."""

    def __init__(self, name: str, values: dict[str, Any]) -> None:
        self.name = name
        self.values = values
        known = set(DEFAULTS[name]) | {k for s, k in SECRETS if s == name}
        for key in values:
            if key not in known:
                raise ConfigError(f"{name}.{key}", "unknown key")

    def key(self, key: str) -> str:
        return f"{self.name}.{key}"

    def get(self, key: str) -> Any:
        if key not in self.values:
            raise ConfigError(self.key(key), "is required")
        return self.values[key]

    def string(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str):
            raise ConfigError(self.key(key), f"expected a string, got {type(value).__name__}")
        return value

    def number(self, key: str, kind: type[int] | type[float], lo: float, hi: float) -> Any:
        value = self.get(key)
        if isinstance(value, str):
            try:
                value = kind(value.strip())
            except ValueError:
                raise ConfigError(self.key(key), f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(self.key(key), f"expected a number, got {value!r}")
        # TOML has nan and inf; int() of either raises, and nan slips every range test.
        if not math.isfinite(value):
            raise ConfigError(self.key(key), f"must be a finite number, got {value!r}")
        if kind is int and value != int(value):
            raise ConfigError(self.key(key), f"expected a whole number, got {value!r}")
        if not lo <= value <= hi:
            raise ConfigError(self.key(key), f"must be between {lo:g} and {hi:g}, got {value!r}")
        return kind(value)

    def listen(self, key: str) -> HostPort:
        value = self.string(key)
        # Brackets come in pairs or not at all: "[::1:8600" is a typo, not "::1".
        match = re.fullmatch(r"(?:\[([^\[\]]+)\]|([^\[\]]+)):(\d{1,5})", value)
        if not match or not 0 <= int(match.group(3)) <= 65535:
            raise ConfigError(self.key(key), f"expected host:port, got {value!r}")
        return HostPort(match.group(1) or match.group(2), int(match.group(3)))

    def url(self, key: str, *, optional: bool = False) -> str:
        value = self.string(key).strip()
        if optional and not value:
            return ""
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - parsed lazily; raises for a bad or out-of-range port
        except ValueError:
            # urlsplit raises for a broken IPv6 literal ("http://[::1"), .port for "h:abc".
            raise ConfigError(self.key(key), f"expected an http(s) URL, got {value!r}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(self.key(key), f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/")

    def path(self, key: str) -> str:
        value = self.string(key)
        # A NUL cannot be in a file name: open() and mkdir() raise ValueError, not OSError.
        if "\x00" in value:
            raise ConfigError(self.key(key), "must not contain a NUL character")
        return value

    def whsec(self, key: str, *, optional: bool = False) -> Secret | None:
        value = self.values.get(key, "")
        if not isinstance(value, str):
            raise ConfigError(self.key(key), "expected a string")
        if not value:
            if optional:
                return None
            raise ConfigError(self.key(key), f"is required (or {key}_file)")
        # Never echo the value: a near-miss secret is still a secret.
        if not value.startswith("whsec_"):
            raise ConfigError(self.key(key), "must start with 'whsec_'")
        try:
            decoded = base64.b64decode(value[6:], validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(self.key(key), "is not valid base64 after 'whsec_'") from None
        if len(decoded) < 16:
            raise ConfigError(self.key(key), "must decode to at least 16 bytes")
        return Secret(value)

    def limits(self) -> ListenerLimits:
        return ListenerLimits(
            max_connections=self.number("max_connections", int, 1, 1_000_000),
            max_connections_per_peer=self.number("max_connections_per_peer", int, 1, 1_000_000),
            keepalive_timeout_s=self.number("keepalive_timeout_s", float, 0.1, 3600),
            header_timeout_s=self.number("header_timeout_s", float, 0.1, 600),
        )

    def choice(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.string(key).strip()
        if value not in allowed:
            raise ConfigError(
                self.key(key), f"must be one of {', '.join(allowed)}; got {value[:40]!r}"
            )
        return value

    def networks(self, key: str) -> tuple[IPNetwork, ...]:
        value = self.get(key)
        if isinstance(value, str):  # from the environment: "10.0.0.0/8, fd00::/8"
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(self.key(key), "expected a list of CIDRs such as '10.0.0.0/8'")
        out: list[IPNetwork] = []
        for item in value:
            if not isinstance(item, str):
                raise ConfigError(self.key(key), f"expected a CIDR string, got {item!r}")
            text = item.strip()
            try:
                iface = ipaddress.ip_interface(text)
            except ValueError:
                raise ConfigError(
                    self.key(key), f"{text[:60]!r} is not an IP address or CIDR"
                ) from None
            # "10.0.0.1/8" is more likely a typo than a wish to allow the whole
            # /8: refuse it, and say what it would mean.
            if iface.ip != iface.network.network_address:
                hint = f"did you mean {iface.network}?"
                raise ConfigError(self.key(key), f"{text[:60]!r} has host bits set ({hint})")
            out.append(iface.network)
        return tuple(out)

    def credential(self, key: str, mode: str) -> Secret:
        """A static webhook credential (bearer token, Basic password): never echoed."""
        value = self.values.get(key, "")
        if not isinstance(value, str):
            raise ConfigError(self.key(key), "expected a string")
        if not value:
            raise ConfigError(
                self.key(key),
                f"is required when {self.name}.auth = {mode!r}"
                f" (or {key}_file, or the credential {self.name}_{key})",
            )
        if len(value) < MIN_CREDENTIAL_CHARS:
            raise ConfigError(self.key(key), f"must be at least {MIN_CREDENTIAL_CHARS} characters")
        if key == "token" and not _B64TOKEN.fullmatch(value):
            raise ConfigError(
                self.key(key), "may hold only letters, digits and -._~+/ (then '=' padding)"
            )
        if not value.isprintable():
            raise ConfigError(self.key(key), "must not contain control characters")
        return Secret(value)

    def boolean(self, key: str) -> bool:
        value = self.get(key)
        if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
            return _BOOLEANS[value.strip().lower()]
        if not isinstance(value, bool):
            raise ConfigError(self.key(key), f"expected true or false, got {value!r}")
        return value

    def secret(self, key: str) -> Secret | None:
        value = self.values.get(key, "")
        if not isinstance(value, str):
            raise ConfigError(self.key(key), "expected a string")  # never echo a secret
        return Secret(value) if value else None

    def codecs(self, key: str) -> tuple[str, ...]:
        value = self.get(key)
        if isinstance(value, str):
            value = [v.strip() for v in value.strip("[]").replace('"', "").split(",") if v.strip()]
        if not isinstance(value, list) or not value:
            raise ConfigError(self.key(key), "expected a non-empty list of codecs")
        for codec in value:
            if codec not in CODECS:
                raise ConfigError(self.key(key), f"unknown codec {codec!r} (known: opus, pcm)")
        if len(set(value)) != len(value):
            raise ConfigError(self.key(key), "lists a codec twice")
        return tuple(value)


def load(
    path: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
    *,
    need_secrets: bool = True,
) -> Config:
    """Read, merge and validate; raises ConfigError with a one-line reason.

    ``need_secrets=False`` is for commands that only read the journal
    (``cxstream status``, ``cxstream jobs``): the secrets are neither read nor
    required, and a placeholder stands in for each.
    """
    env = os.environ if env is None else env
    raw: dict[str, dict[str, Any]] = {s: dict(v) for s, v in DEFAULTS.items()}
    origin = "<defaults>"
    if path is not None:
        origin = str(path)
        try:
            with open(path, "rb") as fh:
                doc = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError("config", f"cannot read {origin}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config", f"{origin} is not valid TOML: {exc}") from None
        except UnicodeDecodeError:
            # tomllib decodes before it parses; its error would quote the bytes.
            raise ConfigError("config", f"{origin} is not valid TOML: not UTF-8") from None
        for section, values in doc.items():
            if section not in DEFAULTS:
                raise ConfigError(section, "unknown section")
            if not isinstance(values, dict):
                raise ConfigError(section, "expected a table")
            raw[section].update(values)
    _merge_env(raw, env)
    if need_secrets:
        _resolve_secrets(raw, env)
    else:
        # The shared journal's DSN is how a read command reaches the journal at all.
        _resolve_secrets(raw, env, {("journal", "dsn")})
        for section, key in SECRETS - {("journal", "dsn")}:
            if (section, key) == ("storage", "secret_access_key") and not raw["storage"].get(
                "access_key_id"
            ):
                continue  # optional: the AWS credential chain stands in for it
            raw.setdefault(section, {}).pop(f"{key}_file", None)
            raw[section][key] = _PLACEHOLDER
    return _validate(raw, origin)


def _validate(raw: dict[str, dict[str, Any]], origin: str) -> Config:
    s = {name: _Section(name, raw.get(name, {})) for name in DEFAULTS}
    wh, cx, st, sto, ar = s["webhook"], s["cxone"], s["streams"], s["storage"], s["archive"]
    auth = wh.choice("auth", AUTH_MODES)
    # Only the chosen mode's keys are read: a leftover credential of another
    # mode (a webhook_secret in the credentials directory) is not an error.
    webhook_secret = wh.whsec("secret") if auth == "standard-webhooks" else None
    token = wh.credential("token", auth) if auth == "bearer" else None
    user, password = "", None
    if auth == "basic":
        user = wh.string("user")
        if not user:
            raise ConfigError("webhook.user", "is required when webhook.auth = 'basic'")
        # RFC 7617: the user-id ends at the first colon, so it cannot hold one.
        if ":" in user or not user.isprintable() or len(user) > 256:
            raise ConfigError(
                "webhook.user", "must be printable, at most 256 characters, without ':'"
            )
        password = wh.credential("password", auth)
    kind = s["source"].choice("kind", SOURCE_KINDS)
    archive_url = ar.url("url", optional=True)
    archive_secret = ar.whsec("secret", optional=True)
    if archive_url and archive_secret is None:
        raise ConfigError("archive.secret", "is required when archive.url is set")
    data_dir, state_dir = Path(sto.path("dir")), Path(sto.path("state_dir"))
    if data_dir.resolve() == state_dir.resolve():
        raise ConfigError("storage.state_dir", "must differ from storage.dir")
    audit_path = s["audit"].path("path")
    if not audit_path:
        raise ConfigError("audit.path", "must be '-' (stdout) or a file path")
    return Config(
        webhook=WebhookConfig(
            listen=wh.listen("listen"),
            secret=webhook_secret,
            max_body_bytes=wh.number("max_body_bytes", int, 1024, 16 * 1024 * 1024),
            body_timeout_s=wh.number("body_timeout_s", float, 0.1, 600),
            drain_grace_s=wh.number("drain_grace_s", float, 0.0, 5.0),
            auth=auth,
            token=token,
            user=user,
            password=password,
            allow_from=wh.networks("allow_from"),
            limits=wh.limits(),
        ),
        cxone=_cxone(cx, kind),
        genesys=_genesys(s["genesys"]) if kind == "genesys" else None,
        streams=StreamsConfig(
            concurrency=st.number("concurrency", int, 1, 4096),
            idle_timeout_s=st.number("idle_timeout_s", float, 0.1, 3600),
            max_attempts=st.number("max_attempts", int, 1, 1000),
            throttle_budget_s=st.number("throttle_budget_s", float, 0.0, 86400),
            backoff_base_s=st.number("backoff_base_s", float, 0.0, 3600),
            backoff_cap_s=st.number("backoff_cap_s", float, 0.0, 86400),
            checkpoint_bytes=st.number("checkpoint_bytes", int, 64 * 1024, 1 << 40),
            chunk_bytes=st.number("chunk_bytes", int, 1024, 16 * 1024 * 1024),
            max_queued=st.number("max_queued", int, 0, 100_000_000),
        ),
        storage=_storage(sto, data_dir, state_dir),
        archive=ArchiveConfig(
            url=archive_url,
            secret=archive_secret,
            timeout_s=ar.number("timeout_s", float, 0.1, 3600),
            backoff_base_s=ar.number("backoff_base_s", float, 0.0, 3600),
            backoff_cap_s=ar.number("backoff_cap_s", float, 0.0, 86400),
            backlog_report_s=ar.number("backlog_report_s", float, 0.1, 86400),
        ),
        audit=AuditConfig(path=audit_path),
        admin=AdminConfig(listen=s["admin"].listen("listen"), limits=s["admin"].limits()),
        source=SourceConfig(
            kind=kind,
            not_ready_grace_s=s["source"].number("not_ready_grace_s", float, 0, 7 * 86400),
        ),
        journal=_journal(s["journal"]),
        origin=origin,
    )


def _required_secret(sec: _Section, key: str, why: str) -> Secret:
    value = sec.values.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(sec.key(key), f"is required {why} (or {key}_file)")
    return Secret(value)


def _cxone(cx: _Section, kind: str) -> CxoneConfig:
    """[cxone]: the stream API (§1) or the Media Playback API (§8); unused for genesys."""
    playback, stream = kind == "cxone-playback", kind == "cxone-stream"
    client_id = cx.string("client_id")
    if (stream or playback) and not client_id:
        raise ConfigError("cxone.client_id", "must not be empty")
    if stream or playback:
        client_secret = _required_secret(cx, "client_secret", f"for source.kind {kind!r}")
    else:
        client_secret = Secret("")
    access_key_id, access_key_secret = cx.string("access_key_id"), None
    if playback:
        if not access_key_id:
            raise ConfigError("cxone.access_key_id", "is required for source.kind 'cxone-playback'")
        access_key_secret = _required_secret(cx, "access_key_secret", "for cxone-playback")
    for key in ("base_url", "token_url"):
        if stream and not str(cx.values.get(key) or "").strip():
            raise ConfigError(cx.key(key), "is required")
    limit = cx.values.get("rate_limit_requests")
    return CxoneConfig(
        # The stream API names both; the playback API discovers them from the issuer.
        base_url=cx.url("base_url", optional=not stream),
        token_url=cx.url("token_url", optional=not stream),
        client_id=client_id,
        client_secret=client_secret,
        codecs=cx.codecs("codecs"),
        connect_timeout_s=cx.number("connect_timeout_s", float, 0.1, 300),
        token_refresh_margin_s=cx.number("token_refresh_margin_s", float, 0, 3600),
        max_control_bytes=cx.number("max_control_bytes", int, 4096, 1 << 30),
        max_segments=cx.number("max_segments", int, 1, 10_000_000),
        issuer=cx.url("issuer"),
        access_key_id=access_key_id,
        access_key_secret=access_key_secret,
        # CXone documents 150 requests per 5 minutes for Media Playback; the
        # stream API (§1) documents no quota, so it is not limited unless asked.
        rate_limit_requests=(150 if playback else 0)
        if limit is None
        else cx.number("rate_limit_requests", int, 0, 1_000_000),
        rate_limit_window_s=cx.number("rate_limit_window_s", float, 1, 86400),
    )


def _genesys(g: _Section) -> GenesysConfig:
    region = g.string("region").strip().lower()
    if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?\.[a-z]{2,}", region):
        raise ConfigError(
            "genesys.region", f"expected a host suffix such as mypurecloud.com, got {region[:60]!r}"
        )
    client_id = g.string("client_id")
    if not client_id:
        raise ConfigError("genesys.client_id", "is required for source.kind 'genesys'")
    formats = g.get("formats")
    if isinstance(formats, str):
        formats = [f.strip() for f in formats.split(",") if f.strip()]
    if (
        not isinstance(formats, list)
        or not formats
        or any(f not in GENESYS_FORMATS for f in formats)
        or len(set(formats)) != len(formats)
    ):
        raise ConfigError(
            "genesys.formats", f"expected distinct formats from {list(GENESYS_FORMATS)}"
        )
    return GenesysConfig(
        api_url=g.url("api_url", optional=True) or f"https://api.{region}",
        login_url=g.url("login_url", optional=True) or f"https://login.{region}",
        client_id=client_id,
        client_secret=_required_secret(g, "client_secret", "for source.kind 'genesys'"),
        formats=tuple(formats),
    )
