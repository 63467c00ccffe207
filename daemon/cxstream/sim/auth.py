"""OAuth2 client-credentials tokens (contract §1.1) and Bearer checks."""

from __future__ import annotations

import base64
import hmac
from urllib.parse import parse_qsl

from aiohttp import hdrs, web

from cxstream.sim.responses import ApiError, json_response
from cxstream.sim.state import STATE_KEY, SimState


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def invalid_token() -> ApiError:
    """The 401 that tells a client to fetch a new token and repeat the call."""
    return ApiError(
        401, "invalid_token", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
    )


def require_token(request: web.Request) -> str:
    token = bearer_token(request)
    if token is None or not request.app[STATE_KEY].token_valid(token):
        raise invalid_token()
    return token


def basic_credentials(header: str) -> tuple[str, str] | None:
    """``(client_id, client_secret)`` from a Basic ``Authorization`` header, if well-formed."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip().encode("ascii"), validate=True).decode()
    except (ValueError, UnicodeError):
        return None
    login, sep, password = decoded.partition(":")
    return (login, password) if sep else None


async def read_form(request: web.Request) -> dict[str, str] | None:
    """A token request's form (RFC 6749: urlencoded UTF-8); None if it is not one.

    ``request.post()`` would raise on a body that is not UTF-8 or a broken
    multipart one, and a simulator answers bad input with a 400, never a 500.
    """
    if request.content_type != "application/x-www-form-urlencoded":
        return None
    try:
        text = (await request.read()).decode("utf-8")
        return dict(parse_qsl(text, keep_blank_values=True, errors="strict"))
    except (UnicodeDecodeError, ValueError):
        return None


def _credentials_ok(state: SimState, header: str) -> bool:
    credentials = basic_credentials(header)
    if credentials is None:
        return False
    login, password = credentials
    # Both comparisons always run so a wrong id costs as long as a wrong secret.
    id_ok = hmac.compare_digest(login.encode(), state.client_id.encode())
    secret_ok = hmac.compare_digest(password.encode(), state.client_secret.encode())
    return id_ok and secret_ok


async def handle_token(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    if not _credentials_ok(state, request.headers.get(hdrs.AUTHORIZATION, "")):
        return json_response(
            {"error": "invalid_client"}, 401, {"WWW-Authenticate": 'Basic realm="cxone"'}
        )
    form = await read_form(request)
    grant = None if form is None else form.get("grant_type")
    if grant is None:
        return json_response({"error": "invalid_request"}, 400)
    if grant != "client_credentials":
        return json_response({"error": "unsupported_grant_type"}, 400)
    token = state.issue_token()
    return json_response(
        {
            "access_token": token,
            "token_type": "Bearer",
            # An integer per RFC 6749; never 0, which a client would read as "useless".
            "expires_in": max(1, int(state.token_ttl)),
        },
        headers={"Cache-Control": "no-store"},
    )
