"""One structlog pipeline, built once per process and passed down (no global config).

Every line is one JSON object with ``ts``, ``level`` and ``event`` first. The
redaction processor runs last before rendering, so no caller can leak a secret
by naming a key carelessly or by passing an exception text that quotes one.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from contextlib import suppress
from typing import Any, BinaryIO, Protocol, cast

import orjson
import structlog

REDACTED = "[redacted]"
# Keys whose values are never written, whatever they hold.
_DENY = frozenset(
    {
        "authorization",
        "token",
        "access_token",
        "secret",
        "client_secret",
        "signature",
        "webhook-signature",
        "webhook_signature",
        "password",
        "cookie",
    }
)

_PLAIN = frozenset({type(None), bool, int, float})

AuditLog = structlog.typing.FilteringBoundLogger
_BEARER = re.compile(r"(?i)(bearer\s+)\S+")


class _Redactor:
    """Drops deny-listed keys and masks known secret values wherever they appear."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = tuple(s for s in secrets if len(s) >= 8)
        # One search tells whether a string can need any masking at all: almost
        # none do, and this runs for every string of every line.
        self._suspect = re.compile(
            "|".join([r"(?i:bearer)\s", *(re.escape(s) for s in self._secrets)])
        )

    def _scrub(self, value: Any) -> Any:
        cls = value.__class__
        if cls in _PLAIN:
            return value
        if cls is str:
            return value if self._suspect.search(value) is None else self._mask(value)
        if isinstance(value, dict):
            return {
                k: REDACTED if str(k).lower() in _DENY else self._scrub(v) for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._scrub(v) for v in value]
        if isinstance(value, bool | int | float):
            return value
        # An exception, a path, a str subclass: rendered as text anyway, so scrub that text.
        return self._mask(str(value))

    def _mask(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return _BEARER.sub(rf"\1{REDACTED}", value)

    def __call__(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event):
            if key.lower() in _DENY:
                del event[key]
            else:
                event[key] = self._scrub(event[key])
        return event


def _order(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    head = {k: event.pop(k) for k in ("ts", "level", "event") if k in event}
    return {**head, **event}


def _default(value: Any) -> Any:
    # Paths, exceptions and the odd Secret: render as text, never crash the trail.
    return str(value)


def _render(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> bytes:
    return orjson.dumps(event, default=_default)


class AuditFile:
    """The audit file, appended to unbuffered, and reopened on SIGHUP.

    logrotate's default (rename, then create) needs the writer to reopen the
    path; the logger holds this object, so a swap of the file underneath is
    invisible to it.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fh = open(path, "ab", buffering=0)  # noqa: SIM115 - closed by close()

    def write(self, data: bytes) -> int:
        return self._fh.write(data)

    def flush(self) -> None:
        """Unbuffered: every line is one write() already."""

    def reopen(self) -> None:
        fresh = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept until the next swap
        old, self._fh = self._fh, fresh
        old.close()

    def close(self) -> None:
        with suppress(OSError):
            self._fh.close()


class AuditStream(Protocol):
    """Where rendered lines go: one ``write`` per line, newline included."""

    def write(self, data: bytes, /) -> int: ...
    def flush(self) -> None: ...


def audit_to(stream: AuditStream, secrets: Iterable[str] = ()) -> AuditLog:
    """The one pipeline, writing to ``stream`` (stdout, the audit file, a test's buffer)."""
    # BytesLogger only ever calls write() and flush(): any AuditStream will do.
    logger: AuditLog = structlog.wrap_logger(
        structlog.BytesLogger(cast(BinaryIO, stream)),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            _Redactor(secrets),
            _order,
            _render,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )
    return logger


def open_audit(path: str, secrets: Iterable[str] = ()) -> tuple[AuditLog, AuditFile | None]:
    """The audit logger and the file it owns (None for stdout), to close at exit."""
    if path == "-":
        return audit_to(sys.stdout.buffer, secrets), None
    owned = AuditFile(path)
    return audit_to(owned, secrets), owned


def close_audit(owned: AuditFile | None) -> None:
    if owned is not None:
        owned.close()
