"""Loading corpora: the packaged demo corpora and TOML/JSON corpus files.

One file may describe all three simulators: ``[[recording]]`` for the stream
API, ``[playback]`` for CXone Media Playback, ``[genesys]`` for Genesys.
"""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from cxstream.sim.platform_spec import (
    GenesysConversation,
    GenesysSettings,
    PlaybackContact,
    PlaybackSettings,
    genesys_from_data,
    playback_from_data,
)
from cxstream.sim.spec import RecordingSpec, corpus_from_data

DEFAULT_CORPUS = "default_corpus.toml"
DEFAULT_PLAYBACK = "default_playback.toml"
DEFAULT_GENESYS = "default_genesys.toml"

PlaybackCorpus = tuple[PlaybackSettings, list[PlaybackContact]]
GenesysCorpus = tuple[GenesysSettings, list[GenesysConversation]]


def _parse(text: str, fmt: str) -> Any:
    try:
        return tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"not valid {fmt.upper()}: {reason}") from None


def parse_corpus(text: str, fmt: str) -> list[RecordingSpec]:
    """Parse and validate corpus text in ``fmt`` ("toml" or "json")."""
    return corpus_from_data(_parse(text, fmt))


def _read(path: str | Path) -> tuple[Path, Any]:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ValueError(f"{path}: corpus files are .toml or .json")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    try:
        return path, _parse(text, suffix[1:])
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def load_corpus(path: str | Path) -> list[RecordingSpec]:
    """Read a ``.toml`` or ``.json`` corpus file; ValueError with a one-line reason if bad."""
    path, data = _read(path)
    try:
        return corpus_from_data(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def load_playback_corpus(path: str | Path) -> PlaybackCorpus:
    """The ``[playback]`` table of a corpus file (ValueError with a one-line reason)."""
    path, data = _read(path)
    try:
        return playback_from_data(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def load_genesys_corpus(path: str | Path) -> GenesysCorpus:
    """The ``[genesys]`` table of a corpus file (ValueError with a one-line reason)."""
    path, data = _read(path)
    try:
        return genesys_from_data(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _packaged(name: str) -> Any:
    text = resources.files("cxstream.sim").joinpath(name).read_text(encoding="utf-8")
    return _parse(text, "toml")


def default_corpus() -> list[RecordingSpec]:
    """The demo's twelve recordings (see ``default_corpus.toml``)."""
    return corpus_from_data(_packaged(DEFAULT_CORPUS))


def default_playback() -> PlaybackCorpus:
    """The CXone Media Playback demo corpus (see ``default_playback.toml``)."""
    return playback_from_data(_packaged(DEFAULT_PLAYBACK))


def default_genesys() -> GenesysCorpus:
    """The Genesys demo corpus (see ``default_genesys.toml``)."""
    return genesys_from_data(_packaged(DEFAULT_GENESYS))
