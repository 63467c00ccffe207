"""The published audit schema, loaded once for every test that checks audit lines."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from jsonschema import Draft202012Validator

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "docs" / "audit.schema.json"


@functools.cache
def audit_validator() -> Draft202012Validator:
    """The validator of one audit line (a parsed JSON object), schema checked first."""
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)
