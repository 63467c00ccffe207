"""Corpus entries for the CXone Media Playback and Genesys Cloud simulators.

A corpus file's ``[playback]`` and ``[genesys]`` tables (docs/simulator.md
lists every key) are validated here once, like ``[[recording]]`` in
``spec.py``: errors are ``ValueError`` naming the entry and the key::

    [playback]
    rate_limit = 150            # requests per rate_window_s; 0 = off
    [[playback.contact]]
    id = "5001"
    not_ready_s = 2             # "Interaction not found" this long after the call
    faults = [{ kind = "throttle", retry_after = 1, on = [1] }]
    files = [{ audio = "call15" }, { audio = "call30", range = false }]

    [[genesys.conversation]]
    id = "c0a8-0001"
    [[genesys.conversation.recording]]
    id = "r-0001"
    segments = 2                # 15 s Opus fixtures chained
    transcode_s = 1             # 202 this long after the first request for a format
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cxstream.sim.spec import (
    MAX_OPUS_SEGMENT_SECONDS,
    MAX_SEGMENTS,
    RECORDING_ID_RE,
    FaultSpec,
    fault_from_dict,
    int_field,
)

# Faults of a download from the media host, counted per media file.
MEDIA_FAULTS: dict[str, frozenset[str]] = {
    "stall": frozenset({"after_bytes"}),
    "truncate": frozenset({"after_bytes"}),
    "trickle": frozenset({"bytes_per_second"}),
    "corrupt": frozenset({"at_byte"}),
    "junk_tail": frozenset({"junk_bytes"}),
    "status": frozenset({"status", "retry_after"}),
    "expired": frozenset(),
}
MEDIA_STATUSES = (503, 500, 502, 504, 429)
# Faults of CXone's contact lookup, counted per contact.
PLAYBACK_FAULTS: dict[str, frozenset[str]] = {
    "not_found": frozenset(),
    "throttle": frozenset({"retry_after"}),
    "throttle_bare": frozenset(),
    "status": frozenset({"status", "retry_after"}),
    "expire_token": frozenset(),
}
# Faults of Genesys's recordings API, counted per conversation (list and single alike).
GENESYS_FAULTS: dict[str, frozenset[str]] = {
    "throttle": frozenset({"retry_after"}),
    "status": frozenset({"status", "retry_after"}),
    "expire_token": frozenset(),
}
API_STATUSES = (503, 500, 502, 504)
MP4_FIXTURES = ("call15", "call30")
GENESYS_FORMATS = ("OGG_OPUS", "WAV")  # what the simulator can transcode to
# Every formatId the API documents; the rest of these answer "not available".
GENESYS_FORMAT_IDS = ("WAV", "WEBM", "WAV_ULAW", "OGG_VORBIS", "OGG_OPUS", "MP3", "NONE")
FILE_STATES = ("AVAILABLE", "ARCHIVED", "DELETED", "RESTORED", "RESTORING", "UPLOADING", "ERROR")
PLAYABLE_STATES = frozenset({"AVAILABLE", "RESTORED"})


@dataclass(frozen=True, slots=True)
class MediaSpec:
    """How the media host serves one file."""

    range: bool = True  # honour Range (206) or ignore it (200, whole file)
    chunked: bool = False  # Transfer-Encoding: chunked instead of Content-Length
    faults: tuple[FaultSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class PlaybackFile:
    audio: str = "call15"
    media: MediaSpec = field(default_factory=MediaSpec)


@dataclass(frozen=True, slots=True)
class PlaybackContact:
    id: str
    files: tuple[PlaybackFile, ...] = (PlaybackFile(),)
    not_ready_s: float = 0.0
    faults: tuple[FaultSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class PlaybackSettings:
    rate_limit: int = 0  # requests per window over the API (CXone's default: 150 / 300 s)
    rate_window_s: float = 300.0
    rate_limit_retry_after: bool = True  # send Retry-After with the rate limit's 429
    url_ttl_s: float = 3600.0
    expired_status: int = 403  # 403 or 404 for an expired fileToPlayUrl
    discovery: str = "both"  # cxone-configuration answers: both | api_endpoint | area_domain


@dataclass(frozen=True, slots=True)
class GenesysRecording:
    id: str
    segments: int = 1
    segment_seconds: int = 15
    formats: tuple[str, ...] = GENESYS_FORMATS
    state: str = "AVAILABLE"
    transcode_s: float = 0.0
    transcoding_answer: str = "202"  # 202, or "empty": 200 with no mediaUris
    media: MediaSpec = field(default_factory=MediaSpec)

    @property
    def duration_seconds(self) -> int:
        return self.segments * self.segment_seconds


@dataclass(frozen=True, slots=True)
class GenesysConversation:
    id: str
    recordings: tuple[GenesysRecording, ...]
    faults: tuple[FaultSpec, ...] = ()


@dataclass(frozen=True, slots=True)
class GenesysSettings:
    rate_limit: int = 0  # requests per window (Genesys's default: 300 / 60 s)
    rate_window_s: float = 60.0
    url_ttl_s: float = 3600.0  # recordingPlaybackUrlTtl, default 60 minutes


T = TypeVar("T")


def _table(where: str, raw: Any, keys: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: must be a table/object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - keys)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}")
    return raw


def _id(where: str, raw: Mapping[str, Any]) -> str:
    value = raw.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # CXone contact ids are numbers; TOML may say so
    if not isinstance(value, str) or not RECORDING_ID_RE.fullmatch(value):
        raise ValueError(f"{where}: id {value!r} must match {RECORDING_ID_RE.pattern}")
    return value


def _bool(where: str, key: str, raw: Mapping[str, Any], default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{where}: {key} must be true or false, got {value!r}")
    return value


def _seconds(where: str, key: str, raw: Mapping[str, Any], default: float, minimum: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ValueError(f"{where}: {key} must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def _choice(where: str, key: str, raw: Mapping[str, Any], choices: tuple[Any, ...]) -> Any:
    value = raw.get(key, choices[0])
    if value not in choices:
        raise ValueError(f"{where}: {key} must be one of {list(choices)}, got {value!r}")
    return value


def _list(where: str, key: str, raw: Mapping[str, Any], item: Callable[[str, Any], T]) -> list[T]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"{where}: {key} must be a list")
    return [item(f"{where}: {key} {i + 1}", v) for i, v in enumerate(value)]


def _faults(
    where: str, raw: Mapping[str, Any], params: dict[str, frozenset[str]], statuses: tuple[int, ...]
) -> tuple[FaultSpec, ...]:
    return tuple(_list(where, "faults", raw, lambda w, f: fault_from_dict(w, f, params, statuses)))


def media_from_dict(where: str, raw: Mapping[str, Any]) -> MediaSpec:
    return MediaSpec(
        range=_bool(where, "range", raw, True),
        chunked=_bool(where, "chunked", raw, False),
        faults=_faults(where, raw, MEDIA_FAULTS, MEDIA_STATUSES),
    )


def playback_file_from_dict(where: str, raw: Any) -> PlaybackFile:
    raw = _table(where, raw, frozenset({"audio", "range", "chunked", "faults"}))
    return PlaybackFile(
        audio=_choice(where, "audio", raw, MP4_FIXTURES), media=media_from_dict(where, raw)
    )


def playback_contact_from_dict(raw: Any) -> PlaybackContact:
    if not isinstance(raw, Mapping):
        raise ValueError(f"a contact must be a table/object, got {type(raw).__name__}")
    where = f"contact {_id('contact', raw)}"
    raw = _table(where, raw, frozenset({"id", "files", "not_ready_s", "faults"}))
    files = _list(where, "files", raw, playback_file_from_dict) if "files" in raw else None
    if files == []:
        raise ValueError(f"{where}: files must list at least one voice file")
    return PlaybackContact(
        id=_id(where, raw),
        files=tuple(files) if files else (PlaybackFile(),),
        not_ready_s=_seconds(where, "not_ready_s", raw, 0.0, 0.0),
        faults=_faults(where, raw, PLAYBACK_FAULTS, API_STATUSES),
    )


def genesys_recording_from_dict(where: str, raw: Any) -> GenesysRecording:
    keys = {"id", "segments", "segment_seconds", "formats", "state", "transcode_s"}
    keys |= {"transcoding_answer", "range", "chunked", "faults"}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: a recording must be a table/object")
    where = f"recording {_id(where, raw)}"
    raw = _table(where, raw, frozenset(keys))
    formats = raw.get("formats", list(GENESYS_FORMATS))
    if not isinstance(formats, list) or any(f not in GENESYS_FORMATS for f in formats):
        raise ValueError(f"{where}: formats must be a list drawn from {list(GENESYS_FORMATS)}")
    return GenesysRecording(
        id=_id(where, raw),
        segments=int_field(
            where, "segments", raw.get("segments", 1), minimum=1, maximum=MAX_SEGMENTS
        ),
        segment_seconds=int_field(
            where,
            "segment_seconds",
            raw.get("segment_seconds", 15),
            minimum=1,
            maximum=MAX_OPUS_SEGMENT_SECONDS,
        ),
        formats=tuple(dict.fromkeys(formats)),
        state=_choice(where, "state", raw, FILE_STATES),
        transcode_s=_seconds(where, "transcode_s", raw, 0.0, 0.0),
        transcoding_answer=_choice(where, "transcoding_answer", raw, ("202", "empty")),
        media=media_from_dict(where, raw),
    )


def genesys_conversation_from_dict(raw: Any) -> GenesysConversation:
    if not isinstance(raw, Mapping):
        raise ValueError(f"a conversation must be a table/object, got {type(raw).__name__}")
    where = f"conversation {_id('conversation', raw)}"
    raw = _table(where, raw, frozenset({"id", "recording", "faults"}))
    recordings = _list(where, "recording", raw, genesys_recording_from_dict)
    return GenesysConversation(
        id=_id(where, raw),
        recordings=tuple(recordings),
        faults=_faults(where, raw, GENESYS_FAULTS, API_STATUSES),
    )


def _unique(kind: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise ValueError(f"duplicate {kind} id {item!r}")
        seen.add(item)


def playback_from_data(data: Any) -> tuple[PlaybackSettings, list[PlaybackContact]]:
    """The ``[playback]`` table of a parsed corpus: settings and contacts."""
    section = data.get("playback") if isinstance(data, Mapping) else None
    if section is None:
        raise ValueError("no [playback] table (contacts for the cxone-playback simulator)")
    keys = {"contact", "rate_limit", "rate_window_s", "rate_limit_retry_after", "url_ttl_s"}
    keys |= {"expired_status", "discovery"}
    section = _table("[playback]", section, frozenset(keys))
    where = "[playback]"
    settings = PlaybackSettings(
        rate_limit=int_field(where, "rate_limit", section.get("rate_limit", 0), minimum=0),
        rate_window_s=_seconds(where, "rate_window_s", section, 300.0, 0.001),
        rate_limit_retry_after=_bool(where, "rate_limit_retry_after", section, True),
        url_ttl_s=_seconds(where, "url_ttl_s", section, 3600.0, 1.0),
        expired_status=_choice(where, "expired_status", section, (403, 404)),
        discovery=_choice(where, "discovery", section, ("both", "api_endpoint", "area_domain")),
    )
    contacts = _list(where, "contact", section, lambda _w, c: playback_contact_from_dict(c))
    _unique("contact", [c.id for c in contacts])
    return settings, contacts


def genesys_from_data(data: Any) -> tuple[GenesysSettings, list[GenesysConversation]]:
    """The ``[genesys]`` table of a parsed corpus: settings and conversations."""
    section = data.get("genesys") if isinstance(data, Mapping) else None
    if section is None:
        raise ValueError("no [genesys] table (conversations for the genesys simulator)")
    keys = frozenset({"conversation", "rate_limit", "rate_window_s", "url_ttl_s"})
    section = _table("[genesys]", section, keys)
    where = "[genesys]"
    settings = GenesysSettings(
        rate_limit=int_field(where, "rate_limit", section.get("rate_limit", 0), minimum=0),
        rate_window_s=_seconds(where, "rate_window_s", section, 60.0, 0.001),
        url_ttl_s=_seconds(where, "url_ttl_s", section, 3600.0, 1.0),
    )
    conversations = _list(
        where, "conversation", section, lambda _w, c: genesys_conversation_from_dict(c)
    )
    _unique("conversation", [c.id for c in conversations])
    _unique("recording", [r.id for c in conversations for r in c.recordings])
    return settings, conversations
