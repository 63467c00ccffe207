"""JSON responses and the API's error shape (``{"error": code, ...}``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(payload),
        content_type="application/json",
        headers=headers,
    )


class ApiError(Exception):
    """An error answer of contract §1.3, raised from validation and turned into JSON."""

    def __init__(
        self,
        status: int,
        code: str,
        *,
        retry_after: int | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.extra = extra
        self.headers = dict(headers or {})
        if retry_after is not None:
            self.headers["Retry-After"] = str(retry_after)

    def response(self) -> web.Response:
        return json_response({"error": self.code, **self.extra}, self.status, self.headers)


def retryable(status: int, retry_after: int) -> ApiError:
    """The 429/503 answers; their codes are fixed by the contract."""
    code = "rate_limited" if status == 429 else "storage_timeout"
    return ApiError(status, code, retry_after=retry_after)


_ERROR_CODES = {
    400: "schema_validation",
    404: "recording_not_found",
    406: "codec_unavailable",
    413: "offset_matrix_too_large",
    416: "offset_out_of_range",
    429: "rate_limited",
    503: "storage_timeout",
}


def error_code(status: int) -> str:
    """The contract's code for ``status``, or a generic one for statuses it does not list."""
    return _ERROR_CODES.get(status, "server_error" if status >= 500 else "client_error")
