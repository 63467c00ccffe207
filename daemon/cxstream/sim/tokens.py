"""JSON Web Tokens (RFC 7519) for the CXone simulator's access tokens.

CXone's access token is a JWT whose claims name the tenant (``tenantId``),
which a client needs to discover the tenant's API host. HS256 with a key only
the simulator knows: clients read the claims, nobody outside can verify them,
as with the real thing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson

JWT_HEADER = b'{"alg":"HS256","typ":"JWT"}'


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict[str, Any], key: bytes) -> str:
    """An HS256 JWT (RFC 7519); clients read its claims, nobody outside can verify it."""
    signing_input = f"{b64url(JWT_HEADER)}.{b64url(orjson.dumps(claims))}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"
