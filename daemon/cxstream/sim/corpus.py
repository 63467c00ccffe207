"""Loading corpora: the packaged demo corpus and TOML/JSON corpus files."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

from cxstream.sim.spec import RecordingSpec, corpus_from_data

DEFAULT_CORPUS = "default_corpus.toml"


def parse_corpus(text: str, fmt: str) -> list[RecordingSpec]:
    """Parse and validate corpus text in ``fmt`` ("toml" or "json")."""
    try:
        data = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"not valid {fmt.upper()}: {reason}") from None
    return corpus_from_data(data)


def load_corpus(path: str | Path) -> list[RecordingSpec]:
    """Read a ``.toml`` or ``.json`` corpus file; ValueError with a one-line reason if bad."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".json"):
        raise ValueError(f"{path}: corpus files are .toml or .json")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read: {exc}") from None
    try:
        return parse_corpus(text, suffix[1:])
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def default_corpus() -> list[RecordingSpec]:
    """The demo's twelve recordings (see ``default_corpus.toml``)."""
    text = resources.files("cxstream.sim").joinpath(DEFAULT_CORPUS).read_text(encoding="utf-8")
    return parse_corpus(text, "toml")
