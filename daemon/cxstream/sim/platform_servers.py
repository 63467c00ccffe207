"""The CXone Media Playback and Genesys simulators on loopback sockets, for tests
and ``cxstream sim --platform``::

    async with PlaybackSim([PlaybackContact("5001")]) as sim:
        # cxone.issuer = sim.issuer (or cxone.base_url = sim.api_url),
        # access key / client credentials = sim.access_key_id, ... (defaults below)
        ...
    async with GenesysSim([GenesysConversation("c-1", (GenesysRecording("r-1"),))]) as sim:
        # genesys.login_url = sim.login_url, genesys.api_url = sim.api_url
        ...

Each runs an auth host, an API host (which also serves ``/archive`` and
``/_sim``) and a media host, each on its own port (0 = the kernel picks).
Entries may be given as specs or as the TOML/JSON-shaped mappings of
docs/simulator.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from cxstream.sim.genesys import GenesysState, build_api_app, build_login_app
from cxstream.sim.genesys import media_key as genesys_key
from cxstream.sim.platform import PlatformServer, add_common_routes, add_entries_route
from cxstream.sim.platform_spec import (
    GenesysConversation,
    GenesysSettings,
    PlaybackContact,
    PlaybackSettings,
    genesys_conversation_from_dict,
    playback_contact_from_dict,
)
from cxstream.sim.playback import PlaybackState
from cxstream.sim.playback import build_api_app as build_playback_api
from cxstream.sim.playback import media_key as playback_key
from cxstream.sim.playback_auth import build_auth_app
from cxstream.sim.server import DEFAULT_ARCHIVE_SECRET, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

DEFAULT_TENANT_ID = "11ee0000-c0de-4000-8000-5113c5e00001"
DEFAULT_ACCESS_KEY_ID = "sim-access-key-id"
DEFAULT_ACCESS_KEY_SECRET = "sim-access-key-secret"


class PlaybackSim(PlatformServer):
    """NICE CXone: discovery + password-grant tokens, Media Playback lookups, MP4 media."""

    state: PlaybackState

    def __init__(
        self,
        contacts: Iterable[PlaybackContact | Mapping[str, Any]] = (),
        *,
        settings: PlaybackSettings | None = None,
        tenant_id: str = DEFAULT_TENANT_ID,
        access_key_id: str = DEFAULT_ACCESS_KEY_ID,
        access_key_secret: str = DEFAULT_ACCESS_KEY_SECRET,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        archive_secret: str = DEFAULT_ARCHIVE_SECRET,
        token_ttl: float = 3600.0,
        host: str = "127.0.0.1",
        auth_port: int = 0,
        api_port: int = 0,
        media_port: int = 0,
    ) -> None:
        if not 0 < token_ttl < float("inf"):
            raise ValueError(f"token_ttl must be a positive number of seconds, got {token_ttl}")
        state = PlaybackState(
            settings=settings or PlaybackSettings(),
            tenant_id=tenant_id,
            access_key_id=access_key_id,
            access_key_secret=access_key_secret,
            client_id=client_id,
            client_secret=client_secret,
            archive_secret=archive_secret,
            token_ttl=token_ttl,
        )
        self._archive_secret = archive_secret
        super().__init__(state, host, {"media": media_port, "api": api_port, "auth": auth_port})
        self.tenant_id = tenant_id
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.client_id = client_id
        self.client_secret = client_secret
        for contact in contacts:
            self.add_contact(contact)

    def build(self, name: str) -> web.Application:
        if name == "auth":
            return build_auth_app(self.state)
        if name == "api":
            app = build_playback_api(self.state)
            add_common_routes(app, self.state, self._archive_secret)
            add_entries_route(
                app, "/_sim/contacts", playback_contact_from_dict, self.state.add_contact
            )
            return app
        return self.state.media.app()

    @property
    def issuer(self) -> str:
        """``cxone.issuer``: serves both discovery documents and the token endpoint."""
        return self.urls.get("auth", "")

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/auth/token"

    @property
    def api_url(self) -> str:
        """The tenant's API host (``api_endpoint``; ``cxone.base_url`` to skip discovery)."""
        return self.urls.get("api", "")

    def add_contact(self, contact: PlaybackContact | Mapping[str, Any]) -> PlaybackContact:
        """Add or replace a contact; its call ends now (``not_ready_s`` counts from here)."""
        if not isinstance(contact, PlaybackContact):
            contact = playback_contact_from_dict(contact)
        self.state.add_contact(contact)
        return contact

    def body(self, contact_id: str, index: int = 1) -> bytes:
        """The true bytes of the contact's ``index``-th voice file (1-based)."""
        return self.state.media.files[playback_key(contact_id, index)].body

    def lookups(self, contact_id: str) -> list[int]:
        """The status of every lookup of ``contact_id`` so far."""
        return self.state.lookups[contact_id]


class GenesysSim(PlatformServer):
    """Genesys Cloud: client-credentials login, Recording API, Ogg Opus / WAV media."""

    state: GenesysState

    def __init__(
        self,
        conversations: Iterable[GenesysConversation | Mapping[str, Any]] = (),
        *,
        settings: GenesysSettings | None = None,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        archive_secret: str = DEFAULT_ARCHIVE_SECRET,
        token_ttl: float = 86_400.0,
        host: str = "127.0.0.1",
        login_port: int = 0,
        api_port: int = 0,
        media_port: int = 0,
    ) -> None:
        if not 0 < token_ttl < float("inf"):
            raise ValueError(f"token_ttl must be a positive number of seconds, got {token_ttl}")
        state = GenesysState(
            settings=settings or GenesysSettings(),
            client_id=client_id,
            client_secret=client_secret,
            archive_secret=archive_secret,
            token_ttl=token_ttl,
        )
        self._archive_secret = archive_secret
        super().__init__(state, host, {"media": media_port, "api": api_port, "auth": login_port})
        self.client_id = client_id
        self.client_secret = client_secret
        for conversation in conversations:
            self.add_conversation(conversation)

    def build(self, name: str) -> web.Application:
        if name == "auth":
            return build_login_app(self.state)
        if name == "api":
            app = build_api_app(self.state)
            add_common_routes(app, self.state, self._archive_secret)
            add_entries_route(
                app,
                "/_sim/conversations",
                genesys_conversation_from_dict,
                self.state.add_conversation,
            )
            return app
        return self.state.media.app()

    @property
    def login_url(self) -> str:
        """``genesys.login_url`` (the real one is ``https://login.<region>``)."""
        return self.urls.get("auth", "")

    @property
    def token_url(self) -> str:
        return f"{self.login_url}/oauth/token"

    @property
    def api_url(self) -> str:
        """``genesys.api_url`` (the real one is ``https://api.<region>``)."""
        return self.urls.get("api", "")

    def add_conversation(
        self, conversation: GenesysConversation | Mapping[str, Any]
    ) -> GenesysConversation:
        """Add or replace a conversation; transcoding clocks start afresh."""
        if not isinstance(conversation, GenesysConversation):
            conversation = genesys_conversation_from_dict(conversation)
        self.state.add_conversation(conversation)
        return conversation

    def body(self, recording_id: str, fmt: str = "OGG_OPUS") -> bytes:
        """The true bytes of a recording in ``fmt`` (OGG_OPUS or WAV)."""
        return self.state.media.files[genesys_key(recording_id, fmt)].body

    def requests(self, conversation_id: str) -> list[int]:
        """The status of every API request about ``conversation_id`` so far."""
        return self.state.requests[conversation_id]
