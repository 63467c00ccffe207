"""Typed reads from one TOML section, each failure one line naming its key."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from typing import Any
from urllib.parse import urlsplit

from cxstream.config.defaults import DEFAULTS, SECRETS
from cxstream.config.model import (
    B64TOKEN,
    MIN_CREDENTIAL_CHARS,
    ConfigError,
    HostPort,
    IPNetwork,
    ListenerLimits,
    Secret,
)
from cxstream.formats.registry import STREAM_CODECS as CODECS

_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class Section:
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
        if key == "token" and not B64TOKEN.fullmatch(value):
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
