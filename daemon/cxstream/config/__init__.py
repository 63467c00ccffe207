"""Configuration: one TOML file, environment overrides, secrets from files.

Precedence, lowest to highest: built-in defaults, the TOML file,
``CXSTREAM_<SECTION>_<KEY>`` environment variables. A secret may come instead
from ``<key>_file`` (path) or from ``$CREDENTIALS_DIRECTORY/<section>_<key>``
(a systemd credential), so it never has to sit in the unit or the file.
Everything is validated once, at start, into frozen dataclasses.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cxstream.config.build import validate
from cxstream.config.defaults import DEFAULTS, ENV_PREFIX, PLACEHOLDER, SECRETS
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
    HostPort,
    IPNetwork,
    JournalConfig,
    ListenerLimits,
    Secret,
    SourceConfig,
    StorageConfig,
    StreamsConfig,
    WebhookConfig,
)


def _merge_env(raw: dict[str, dict[str, Any]], env: Mapping[str, str]) -> None:
    from_env: set[tuple[str, str]] = set()
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
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
            raw[section][key] = PLACEHOLDER
    return validate(raw, origin)


__all__ = [
    "AUTH_MODES",
    "DEFAULTS",
    "GENESYS_FORMATS",
    "SECRETS",
    "SOURCE_KINDS",
    "AdminConfig",
    "ArchiveConfig",
    "AuditConfig",
    "Config",
    "ConfigError",
    "CxoneConfig",
    "GenesysConfig",
    "HostPort",
    "IPNetwork",
    "JournalConfig",
    "ListenerLimits",
    "Secret",
    "SourceConfig",
    "StorageConfig",
    "StreamsConfig",
    "WebhookConfig",
    "load",
]
