"""Source ``cxone-playback``: NICE CXone's Media Playback API (platforms.md).

Token: OpenID discovery of the issuer's token endpoint, the password grant
with an access key (plus the app's client id/secret). API host: the
tenant's, from ``/.well-known/cxone-configuration?tenantId=`` (the tenant id
is a claim of the token), unless ``cxone.base_url`` names it. Lookup:
``media-playback/v1/contacts?acd-call-id=…``; each voice file of the contact
is the MP4 behind ``interactions[].data.fileToPlayUrl``. A contact with
several files gives ``<name>``, ``<name>-2``, … in the order listed.
"Not found" right after a call is normal: a wait, not a failure.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from cxstream.config import CxoneConfig
from cxstream.fetcher.cxone import read_bounded
from cxstream.fetcher.download import UrlMedia, status_error
from cxstream.fetcher.errors import FetchError, NotReady, PermanentError, parse_retry_after
from cxstream.fetcher.ratelimit import RateLimiter
from cxstream.fetcher.source import Expect, Target
from cxstream.fetcher.token import Grant, TokenSource
from cxstream.formats import registry
from cxstream.journal import Job

_NOT_FOUND_HINTS = ("not found", "notfound", "no interaction")


def tenant_of(token: str) -> str | None:
    """The ``tenantId`` claim of a JWT access token (read, not verified: it came
    straight from the issuer over TLS and is only used to find the API host)."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, orjson.JSONDecodeError):
        return None
    tenant = claims.get("tenantId") or claims.get("tenant_id") if isinstance(claims, dict) else None
    return str(tenant) if tenant else None


def api_from_configuration(doc: Any) -> str | None:
    """``api_endpoint`` wins; else ``https://api-<area>.<domain>``."""
    if not isinstance(doc, dict):
        return None
    endpoint = doc.get("api_endpoint")
    if isinstance(endpoint, str) and endpoint.startswith(("https://", "http://")):
        return endpoint.rstrip("/")
    area, domain = doc.get("area"), doc.get("domain")
    if isinstance(area, str) and isinstance(domain, str) and area and domain:
        return f"https://api-{area}.{domain}"
    return None


def voice_files(doc: Any) -> list[dict[str, Any]]:
    """The interactions that carry a playable file, in the order listed."""
    interactions = doc.get("interactions") if isinstance(doc, dict) else None
    if not isinstance(interactions, list):
        raise FetchError("lookup_malformed", "no interactions list")
    out: list[dict[str, Any]] = []
    for item in interactions:
        data = item.get("data") if isinstance(item, dict) else None
        url = data.get("fileToPlayUrl") if isinstance(data, dict) else None
        if isinstance(data, dict) and isinstance(url, str) and url.startswith("http"):
            out.append(data)
    return out


class CxonePlaybackSource:
    kind = "cxone-playback"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        config: CxoneConfig,
        limiter: RateLimiter,
        on_token: Any = None,
    ) -> None:
        self._session = session
        self._cfg = config
        self._limiter = limiter
        assert config.access_key_secret is not None
        grant = Grant(
            config.client_id,
            config.client_secret,
            form={
                "grant_type": "password",
                "username": config.access_key_id,
                "password": config.access_key_secret.reveal(),
            },
            connect_timeout_s=config.connect_timeout_s,
            refresh_margin_s=config.token_refresh_margin_s,
        )
        self._tokens = TokenSource(
            session, grant, config.token_url or self._discover_token_url, on_refresh=on_token
        )
        self._api: str | None = config.base_url or None
        self._files: dict[int, list[dict[str, Any]]] = {}

    # -- discovery ----------------------------------------------------------

    async def _json(self, url: str, *, token: str | None = None) -> Any:
        await self._limiter.acquire()
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self._session.get(url, headers=headers) as resp:
                if resp.status != 200:
                    raise await self._error(resp)
                body = await read_bounded(resp, self._cfg.max_control_bytes, "lookup")
        except aiohttp.ClientError as exc:
            raise FetchError("api_unreachable", exc.__class__.__name__) from None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise FetchError("lookup_malformed", "not JSON") from None

    async def _discover_token_url(self) -> str:
        doc = await self._json(f"{self._cfg.issuer}/.well-known/openid-configuration")
        url = doc.get("token_endpoint") if isinstance(doc, dict) else None
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise FetchError("discovery_malformed", "no token_endpoint")
        return url

    async def _api_base(self, token: str) -> str:
        if self._api is None:
            tenant = tenant_of(token)
            if tenant is None:
                raise PermanentError("discovery_failed", "the token names no tenantId")
            doc = await self._json(
                f"{self._cfg.issuer}/.well-known/cxone-configuration?tenantId={quote(tenant)}"
            )
            api = api_from_configuration(doc)
            if api is None:
                raise FetchError("discovery_malformed", "no api_endpoint or area/domain")
            self._api = api
        return self._api

    async def _error(self, resp: aiohttp.ClientResponse) -> FetchError:
        if resp.status == 429:
            self._limiter.throttled()
        raw = await resp.content.read(64 * 1024)
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = {}
        message = str(body.get("message", "")) if isinstance(body, dict) else ""
        if resp.status == 404 or (
            resp.status in (400, 404) and any(h in message.lower() for h in _NOT_FOUND_HINTS)
        ):
            # Right after a call the interaction is not there yet.
            retry = parse_retry_after(resp.headers.get("Retry-After"))
            return NotReady(
                "not_found_yet", message[:120] or None, status=resp.status, retry_after=retry
            )
        return status_error(resp, "api")

    # -- the Source ---------------------------------------------------------

    async def _lookup(self, job: Job) -> list[dict[str, Any]]:
        token = await self._tokens.get()
        api = await self._api_base(token)
        assert job.contact_id is not None
        url = (
            f"{api}/media-playback/v1/contacts?acd-call-id={quote(job.contact_id, safe='')}"
            "&media-type=voice-only&exclude-waveforms=true"
        )
        try:
            doc = await self._json(url, token=token)
        except FetchError as err:
            if err.status == 401:
                self._tokens.invalidate(token)
            raise
        files = voice_files(doc)
        if not files:
            raise NotReady("no_voice_file_yet", status=200)
        self._files[job.id] = files
        return files

    async def resolve(self, job: Job) -> tuple[Target, ...]:
        if job.contact_id is None:
            raise PermanentError(
                "contact_required", "cxone-playback looks recordings up by contact"
            )
        files = await self._lookup(job)
        base = _base_name(job)
        targets = []
        for i in range(len(files)):
            name = base if i == 0 else f"{base}-{i + 1}"
            extra = {"contactId": job.contact_id, "fileIndex": i + 1}
            targets.append(Target(name=name, formats=("mp4",), ref=str(i + 1), extra=extra))
        if job.source_ref is not None:
            # A fanned-out job: only its own file.
            return tuple(t for t in targets if t.ref == job.source_ref) or _gone(job)
        return tuple(targets)

    async def media(self, job: Job, target: Target, fmt: str) -> UrlMedia:
        files = self._files.get(job.id) or await self._lookup(job)
        index = int(target.ref or "1") - 1
        if index >= len(files):
            _gone(job)
        data = files[index]

        async def refresh() -> str:
            fresh = await self._lookup(job)
            if index >= len(fresh):
                _gone(job)
            return str(fresh[index]["fileToPlayUrl"])

        duration = data.get("duration") or data.get("durationSeconds")
        expect = Expect(
            size=None, duration_s=float(duration) if isinstance(duration, int | float) else None
        )
        return UrlMedia(self._session, registry.MP4, expect, str(data["fileToPlayUrl"]), refresh)

    def forget(self, job: Job) -> None:
        self._files.pop(job.id, None)


def _base_name(job: Job) -> str:
    """A fanned-out job is named ``<base>-N``; the contact's own job is ``<base>``."""
    if job.source_ref is not None and job.source_ref != "1":
        return job.recording_id.rsplit("-", 1)[0]
    return job.recording_id


def _gone(job: Job) -> tuple[Target, ...]:
    raise PermanentError("recording_gone", f"file {job.source_ref} no longer listed")
