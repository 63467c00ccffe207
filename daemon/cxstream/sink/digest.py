"""``Repr-Digest`` (RFC 9530): a Structured Fields dictionary of byte sequences."""

from __future__ import annotations

from http_sfv.dictionary import Dictionary


class DigestHeaderError(ValueError):
    """The header is present but not a well-formed sha-256 digest."""


def parse_repr_digest(value: str | None) -> bytes | None:
    """The sha-256 digest the header carries; None when there is none to check."""
    if value is None:
        return None
    field = Dictionary()
    try:
        field.parse(value.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise DigestHeaderError("Repr-Digest is not a structured-field dictionary") from None
    item = field.get("sha-256")
    if item is None:
        return None
    digest = getattr(item, "value", None)
    if not isinstance(digest, bytes) or len(digest) != 32:
        raise DigestHeaderError("Repr-Digest sha-256 is not a 32-byte sequence")
    return digest
