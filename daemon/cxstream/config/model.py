"""The configuration as frozen dataclasses, and the few types they are made of."""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

AUTH_MODES = ("standard-webhooks", "bearer", "basic")
SOURCE_KINDS = ("cxone-stream", "cxone-playback", "genesys")
# Shorter static credentials are guessable; a signature secret is checked by its own rule.
MIN_CREDENTIAL_CHARS = 16
# RFC 6750's b64token: what a Bearer header may carry without quoting.
B64TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")

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


def _dsn_password(dsn: str) -> list[str]:
    try:
        from psycopg.conninfo import conninfo_to_dict

        password = conninfo_to_dict(dsn).get("password")
    except Exception:
        return []
    return [str(password)] if password else []
