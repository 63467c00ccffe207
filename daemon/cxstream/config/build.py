"""From validated sections to the ``Config``: a builder per section that needs more than reads."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

from cxstream.config.defaults import DEFAULTS
from cxstream.config.model import (
    AUTH_MODES,
    GENESYS_FORMATS,
    SOURCE_KINDS,
    AdminConfig,
    ArchiveConfig,
    AuditConfig,
    Config,
    ConfigError,
    CxoneConfig,
    GenesysConfig,
    JournalConfig,
    Secret,
    SourceConfig,
    StorageConfig,
    StreamsConfig,
    WebhookConfig,
)
from cxstream.config.section import Section

NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def validate(raw: dict[str, dict[str, Any]], origin: str) -> Config:
    s = {name: Section(name, raw.get(name, {})) for name in DEFAULTS}
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


def _required_secret(sec: Section, key: str, why: str) -> Secret:
    value = sec.values.get(key)
    if not isinstance(value, str) or not value:
        raise ConfigError(sec.key(key), f"is required {why} (or {key}_file)")
    return Secret(value)


def _cxone(cx: Section, kind: str) -> CxoneConfig:
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


def _genesys(g: Section) -> GenesysConfig:
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


def _journal(sec: Section) -> JournalConfig:
    backend = sec.choice("backend", ("sqlite", "postgres"))
    node = sec.string("node").strip() or socket.gethostname()
    if (backend == "postgres" or sec.values.get("node")) and not NODE_NAME.fullmatch(node):
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


def _storage(sec: Section, data_dir: Path, state_dir: Path) -> StorageConfig:
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
        if not BUCKET_NAME.fullmatch(bucket):
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
