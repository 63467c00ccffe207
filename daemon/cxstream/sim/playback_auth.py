"""CXone's auth host: OpenID discovery, tenant discovery and the token endpoint.

``/.well-known/openid-configuration`` names the ``token_endpoint``;
``/.well-known/cxone-configuration?tenantId=`` names the tenant's API host as
``api_endpoint`` and/or ``area`` + ``domain`` (``discovery`` setting);
``POST /auth/token`` takes the password grant (access key id/secret as
username/password) or a refresh token, the client id/secret in Basic auth or
in the form, and answers with a JWT access token carrying ``tenantId``.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from aiohttp import hdrs, web

from cxstream.sim.auth import basic_credentials, read_form
from cxstream.sim.playback import AREA, DOMAIN, PLAYBACK_KEY, PlaybackState, api_error
from cxstream.sim.responses import json_response


async def handle_openid(request: web.Request) -> web.StreamResponse:
    state = request.app[PLAYBACK_KEY]
    state.discovery["openid"] += 1
    state.notify()
    issuer = state.urls["auth"]
    return json_response(
        {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/auth/authorize",
            "token_endpoint": f"{issuer}/auth/token",
            "jwks_uri": f"{issuer}/.well-known/jwks",
            "grant_types_supported": ["password", "refresh_token", "authorization_code"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }
    )


async def handle_cxone_configuration(request: web.Request) -> web.StreamResponse:
    state = request.app[PLAYBACK_KEY]
    state.discovery["cxone"] += 1
    state.notify()
    tenant = request.query.get("tenantId")
    if not tenant:
        return api_error(400, "BAD_REQUEST", "tenantId is required")
    if tenant != state.tenant_id:
        return api_error(404, "NOT_FOUND", "Tenant not found")
    body: dict[str, Any] = {"tenantId": tenant, "private": False}
    if state.settings.discovery in ("both", "area_domain"):
        body |= {"area": AREA, "domain": DOMAIN}
    if state.settings.discovery in ("both", "api_endpoint"):
        body["api_endpoint"] = state.urls["api"]
    return json_response(body)


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _oauth_error(status: int, error: str, description: str) -> web.Response:
    headers = {"WWW-Authenticate": 'Basic realm="cxone"'} if status == 401 else None
    return json_response({"error": error, "error_description": description}, status, headers)


async def handle_token(request: web.Request) -> web.StreamResponse:
    state = request.app[PLAYBACK_KEY]
    form = await read_form(request)
    if form is None:
        state.count_token_request("rejected")
        return _oauth_error(400, "invalid_request", "a urlencoded UTF-8 form is required")
    basic = basic_credentials(request.headers.get(hdrs.AUTHORIZATION, ""))
    client = basic if basic is not None else (form.get("client_id"), form.get("client_secret"))
    if basic is not None and form.get("client_id") not in (None, basic[0]):
        state.count_token_request("rejected")
        return _oauth_error(400, "invalid_request", "two different client ids")
    # Every comparison runs whatever fails first, so timing says nothing.
    client_ok = _same(client[0], state.client_id) & _same(client[1], state.client_secret)
    if not client_ok:
        state.count_token_request("rejected")
        return _oauth_error(401, "invalid_client", "client authentication failed")
    grant = form.get("grant_type")
    if grant == "password":
        user_ok = _same(form.get("username"), state.access_key_id)
        user_ok &= _same(form.get("password"), state.access_key_secret)
        if not user_ok:
            state.count_token_request("rejected")
            return _oauth_error(400, "invalid_grant", "invalid access key")
    elif grant == "refresh_token":
        if form.get("refresh_token") not in state.refresh_tokens:
            state.count_token_request("rejected")
            return _oauth_error(400, "invalid_grant", "unknown refresh token")
    else:
        state.count_token_request("rejected")
        if grant is None:
            return _oauth_error(400, "invalid_request", "grant_type is required")
        return _oauth_error(400, "unsupported_grant_type", f"{grant} is not supported")
    state.count_token_request(grant)
    refresh = secrets.token_urlsafe(24)
    state.refresh_tokens.add(refresh)
    return json_response(
        {
            "access_token": state.issue_token(),
            "token_type": "Bearer",
            "expires_in": max(1, int(state.token_ttl)),
            "refresh_token": refresh,
            "scope": "RecordingManagementApi",
        },
        headers={"Cache-Control": "no-store"},
    )


def build_auth_app(state: PlaybackState) -> web.Application:
    app = web.Application()
    app[PLAYBACK_KEY] = state
    app.router.add_get("/.well-known/openid-configuration", handle_openid)
    app.router.add_get("/.well-known/cxone-configuration", handle_cxone_configuration)
    app.router.add_post("/auth/token", handle_token)
    return app
