"""Built-in defaults and which keys are secrets: the lowest layer of the configuration."""

from __future__ import annotations

import base64
from typing import Any

from cxstream.config.model import GENESYS_FORMATS

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
ENV_PREFIX = "CXSTREAM_"
PLACEHOLDER = "whsec_" + base64.b64encode(bytes(32)).decode()
