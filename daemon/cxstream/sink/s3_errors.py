"""How an object store's answer is classified: retry later, or a clear permanent code.

Retryable (``StoreUnavailable``) is everything that says "not now": the store
unreachable, a 5xx, throttling. Those are an outage, not a failed attempt.
Permanent (``PublishRejected``) is everything no retry can fix: credentials
or policy (403), a checksum the store refused, Object Lock asked of a bucket
without it, a missing bucket. Messages name the operation, the key and the
store's own error code and text; they never hold a credential.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)


class S3Error(Exception):
    """A publication that did not happen; ``code`` is stable, for audit lines."""

    retryable = False

    def __init__(self, code: str, detail: str = "", *, status: int | None = None) -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.status = status


class StoreUnavailable(S3Error):
    """Unreachable, 5xx or throttled: retry later; not the recording's fault."""

    retryable = True


class PublishRejected(S3Error):
    """The store refused for a reason a retry cannot fix (403, checksum, lock, bucket)."""


class ObjectConflict(PublishRejected):
    """The key already holds different bytes. Never overwritten: the caller picks
    another key (or an operator looks at what is there)."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__("s3_object_exists", f"{key}: {detail}")
        self.key = key


class SpoolMismatch(PublishRejected):
    """The spool file no longer hashes to what was verified: nothing was published."""


_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"}
_TRANSIENT = {"RequestTimeout", "InternalError", "ServiceUnavailable", "OperationAborted"}
_CHECKSUM = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"}
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "InvalidToken",
    "ExpiredToken",
}
_LOCK = {
    "ObjectLockConfigurationNotFoundError",
    "InvalidRetentionPeriod",
    "MissingUploadObjectWithObjectLockHeaders",
}


def error_fields(exc: ClientError) -> tuple[str, str, int | None]:
    response: Any = exc.response
    error = response.get("Error") or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return str(error.get("Code", "")), str(error.get("Message", "")), status


def classify(exc: Exception, what: str) -> S3Error:
    """``what`` says which call on which key, e.g. ``"PutObject 2026/11/24/r1.opus"``."""
    if isinstance(exc, S3Error):
        return exc
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return PublishRejected("s3_no_credentials", f"{what}: {exc}")
    if isinstance(exc, BotoCoreError | OSError | TimeoutError | aiohttp.ClientError):
        # Connection refused or reset, DNS, timeouts: the store is not there now.
        return StoreUnavailable("s3_unreachable", f"{what}: {exc.__class__.__name__}")
    if not isinstance(exc, ClientError):
        return PublishRejected("s3_error", f"{what}: {exc.__class__.__name__}")
    code, message, status = error_fields(exc)
    detail = f"{what}: {code or status} {message}".rstrip()
    if code in _THROTTLED or status in (429, 503):
        return StoreUnavailable("s3_throttled", detail, status=status)
    if code in _TRANSIENT or (status or 0) >= 500:
        return StoreUnavailable("s3_unavailable", detail, status=status)
    lowered = message.lower()
    if code in _CHECKSUM or (code == "InvalidRequest" and "checksum" in lowered):
        return PublishRejected("s3_checksum_mismatch", detail, status=status)
    if code in _LOCK or (code == "InvalidRequest" and "lock" in lowered):
        return PublishRejected("s3_object_lock_invalid", detail, status=status)
    if code in _DENIED or status == 403:
        return PublishRejected("s3_access_denied", detail, status=status)
    if code == "NoSuchBucket":
        return PublishRejected("s3_no_such_bucket", detail, status=status)
    return PublishRejected("s3_rejected", detail, status=status)
