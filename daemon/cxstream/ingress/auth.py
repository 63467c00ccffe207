"""Who may post a webhook: the peer filter and the credential check (contract §9).

One ``Authenticator`` per daemon, chosen from ``webhook.auth`` in the
composition root. A static credential (``bearer``, ``basic``) is judged from
the headers alone, before the body is read, so a caller without it costs us
no body; a Standard Webhooks signature covers the body, so it is judged after.
Every comparison is constant-time, and no reason ever quotes a credential.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import re
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from multidict import CIMultiDictProxy
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from cxstream.config import IPNetwork, WebhookConfig

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Headers = CIMultiDictProxy[str]

WEBHOOK_ID = re.compile(r"[\x21-\x7e]{1,256}")
_SIGNATURE = re.compile(r"v\d+,[A-Za-z0-9+/=]+( v\d+,[A-Za-z0-9+/=]+)*")
REALM = "cxstream"


@dataclass(frozen=True, slots=True)
class Denied:
    """A 401: the reason answered and audited, and the challenge to send with it."""

    reason: str
    challenge: str | None = None  # the WWW-Authenticate value


class Authenticator(Protocol):
    mode: str  # the webhook.auth value, written into every webhook.* audit line

    def precheck(self, headers: Headers) -> Denied | None:
        """Judged from the headers alone, before the body is read."""

    def verify(self, headers: Headers, body: bytes) -> Denied | None:
        """Judged over the exact body bytes received."""

    def webhook_id(self, headers: Headers) -> str | None:
        """A verified request's idempotency key; None where the mode has none."""


class StandardWebhooksAuth:
    """Contract §2: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``."""

    mode = "standard-webhooks"

    def __init__(self, secret: str) -> None:
        self._signer = Webhook(secret)

    def precheck(self, headers: Headers) -> Denied | None:
        return None

    def verify(self, headers: Headers, body: bytes) -> Denied | None:
        wid = headers.get("webhook-id")
        ts = headers.get("webhook-timestamp")
        sig = headers.get("webhook-signature")
        if not wid or not ts or not sig:
            return Denied("missing signature headers")
        if not WEBHOOK_ID.fullmatch(wid):
            return Denied("malformed webhook-id")
        if not ts.isascii() or not ts.isdigit():
            return Denied("malformed webhook-timestamp")
        if not _SIGNATURE.fullmatch(sig):
            return Denied("malformed webhook-signature")
        try:
            self._signer.verify(
                body.decode("utf-8"),
                {"webhook-id": wid, "webhook-timestamp": ts, "webhook-signature": sig},
                json_parse=False,
            )
        except WebhookVerificationError as exc:
            return Denied(str(exc).lower() or "signature verification failed")
        except (ValueError, TypeError):
            # The library's own parsing (split, base64) on inputs our regexes let through.
            return Denied("malformed webhook-signature")
        return None

    def webhook_id(self, headers: Headers) -> str | None:
        return headers["webhook-id"]


def _presented(headers: Headers, scheme: str) -> bytes | Denied:
    """The credentials after ``Authorization: <scheme> ``, or why there are none."""
    challenge = f'{scheme} realm="{REALM}"'
    values = headers.getall("Authorization", [])
    if not values:
        return Denied("missing Authorization header", challenge)
    if len(values) > 1:
        return Denied("more than one Authorization header", challenge)
    given, _, credentials = values[0].strip().partition(" ")
    if given.lower() != scheme.lower():  # the scheme is case-insensitive (RFC 9110)
        return Denied(f"Authorization scheme is not {scheme}", challenge)
    credentials = credentials.strip()
    if not credentials or not credentials.isascii():
        # Worded so that no scheme name is followed by a word: the audit
        # redactor masks whatever follows "Bearer ", reasons included.
        return Denied(f"malformed Authorization header ({scheme})", challenge)
    return credentials.encode("ascii")


class BearerAuth:
    """``Authorization: Bearer <token>`` against ``webhook.token``."""

    mode = "bearer"
    _challenge = f'Bearer realm="{REALM}"'  # contract §9, word for word

    def __init__(self, token: str) -> None:
        self._token = token.encode("utf-8")

    def precheck(self, headers: Headers) -> Denied | None:
        presented = _presented(headers, "Bearer")
        if isinstance(presented, Denied):
            return presented
        if not hmac.compare_digest(presented, self._token):
            return Denied("wrong token", self._challenge)
        return None

    def verify(self, headers: Headers, body: bytes) -> Denied | None:
        return None

    def webhook_id(self, headers: Headers) -> str | None:
        # An unsigned webhook-id is only a caller's claim: never an idempotency key.
        return None


class BasicAuth:
    """``Authorization: Basic base64(user:password)`` against ``webhook.user``/``password``."""

    mode = "basic"
    _challenge = f'Basic realm="{REALM}"'  # contract §9, word for word

    def __init__(self, user: str, password: str) -> None:
        self._user = user.encode("utf-8")
        self._password = password.encode("utf-8")

    def precheck(self, headers: Headers) -> Denied | None:
        presented = _presented(headers, "Basic")
        if isinstance(presented, Denied):
            return presented
        try:
            decoded = base64.b64decode(presented, validate=True)
        except (binascii.Error, ValueError):
            return Denied("malformed Authorization header (Basic)", self._challenge)
        user, colon, password = decoded.partition(b":")
        if not colon:
            return Denied("malformed Authorization header (Basic)", self._challenge)
        # Both compared, always: `&`, not `and`, so a wrong user takes as long
        # as a wrong password and the timing tells nothing about which.
        user_ok = hmac.compare_digest(user, self._user)
        password_ok = hmac.compare_digest(password, self._password)
        if not (user_ok & password_ok):
            return Denied("wrong user or password", self._challenge)
        return None

    def verify(self, headers: Headers, body: bytes) -> Denied | None:
        return None

    def webhook_id(self, headers: Headers) -> str | None:
        return None


def authenticator_for(cfg: WebhookConfig) -> Authenticator:
    """The one authenticator ``webhook.auth`` names (config validation saw to its keys)."""
    if cfg.auth == "bearer" and cfg.token is not None:
        return BearerAuth(cfg.token.reveal())
    if cfg.auth == "basic" and cfg.password is not None:
        return BasicAuth(cfg.user, cfg.password.reveal())
    if cfg.auth == "standard-webhooks" and cfg.secret is not None:
        return StandardWebhooksAuth(cfg.secret.reveal())
    raise ValueError(f"webhook.auth {cfg.auth!r} without its credentials")


def client_address(request: web.Request) -> IPAddress | None:
    """The TCP peer (behind a proxy: the proxy), IPv4-mapped IPv6 as plain IPv4."""
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    if not peer or not isinstance(peer, tuple) or not isinstance(peer[0], str):
        return None  # a Unix socket, or a connection already gone
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def peer_allowed(address: IPAddress | None, allow_from: tuple[IPNetwork, ...]) -> bool:
    """True when ``allow_from`` is empty (any peer) or one of its networks holds ``address``."""
    if not allow_from:
        return True
    if address is None:
        return False
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv4Address):
        # An operator may have written the mapped form (::ffff:10.0.0.0/104).
        candidates.append(ipaddress.IPv6Address(f"::ffff:{address}"))
    return any(a in net for a in candidates for net in allow_from)


AUTHENTICATOR = web.AppKey("authenticator", Authenticator)
