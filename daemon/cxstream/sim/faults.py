"""Turning a request's active faults into what is actually sent.

A :class:`Plan` holds the body as served, the digest advertised for it and
how delivery misbehaves. Body faults come in two flavours: *honest* ones
(``rot``, ``missing_eos``) change the body and the advertised digest alike,
so only format checks or the metadata sha256 can notice; ``corrupt`` changes
the body behind the digest's back and ``bad_digest`` lies about an intact body.
The hostile ones (``junk_tail``, ``endless``, ``gzip``, ``gzip_bomb``) serve
more, or other, bytes than the digest describes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cxstream.formats import ogg
from cxstream.sim.hostile import cycled, gzip_bomb
from cxstream.sim.spec import FaultSpec


@dataclass(frozen=True, slots=True)
class Plan:
    body: bytes
    digest: str
    stall_after: int | None = None
    truncate_after: int | None = None
    bytes_per_second: int | None = None
    ignore_range: bool = False
    # Send an honest Content-Length instead of chunked framing.
    content_length: bool = False
    # After the body, keep sending (None: don't; 0: never stop; else bytes in all).
    endless: int | None = None
    content_encoding: str | None = None


def repr_digest(body: bytes) -> str:
    """An RFC 9530 ``Repr-Digest`` value for ``body``."""
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def flip_byte(body: bytes, position: int) -> bytes:
    if not body:
        return body
    position = min(position, len(body) - 1)
    out = bytearray(body)
    out[position] ^= 0xFF
    return bytes(out)


def page_body_position(body: bytes, at_byte: int) -> int:
    """The first Ogg page-body byte at or after ``at_byte`` (the last one if none).

    Flipping a payload byte keeps the page parseable but breaks its CRC, which
    is what a decoder-side check must catch; a flipped header byte would
    instead look like framing damage.
    """
    pos = 0
    last = max(len(body) - 1, 0)
    for page, _raw in ogg.iter_pages(body):
        start = pos + page.header_len
        end = start + page.body_len
        if page.body_len:
            last = end - 1
            if at_byte < end:
                return max(at_byte, start)
        pos += page.size
    return last


def clear_eos(body: bytes) -> bytes:
    """Every page's EOS flag cleared, CRCs recomputed: links that never say they ended."""
    out: list[bytes] = []
    for page, raw in ogg.iter_pages(body):
        if not page.eos:
            out.append(raw)
            continue
        fixed = bytearray(raw)
        fixed[5] &= ~ogg.FLAG_EOS & 0xFF
        struct.pack_into("<I", fixed, 22, ogg.page_crc(fixed))
        out.append(bytes(fixed))
    return b"".join(out)


def make_plan(
    body: bytes, codec: str, faults: Sequence[FaultSpec], digest: str | None = None
) -> Plan:
    """``digest``: the true body's ``Repr-Digest`` when the caller has it already."""
    kinds = {f.kind: f for f in faults}
    honest = body
    if "missing_eos" in kinds and codec == "opus":
        honest = clear_eos(honest)
    if "rot" in kinds:
        at = kinds["rot"].at_byte
        position = page_body_position(honest, at) if codec == "opus" else at
        honest = flip_byte(honest, position)
    served = honest
    if "corrupt" in kinds:
        served = flip_byte(served, kinds["corrupt"].at_byte)
    if digest is None or honest is not body:
        digest = repr_digest(honest)
    if "bad_digest" in kinds:
        digest = repr_digest(honest + b"\0not the body")
    stall_after = kinds["stall"].after_bytes if "stall" in kinds else None
    truncate_after = kinds["truncate"].after_bytes if "truncate" in kinds else None
    if stall_after is not None and truncate_after is not None:
        # Whichever comes first happens; the other never gets its chance.
        if truncate_after < stall_after:
            stall_after = None
        else:
            truncate_after = None
    junk = kinds.get("junk_tail")
    if junk is not None:
        served += cycled(served, len(served), junk.extra_bytes)
    encoding = None
    if "gzip_bomb" in kinds:
        served, encoding = gzip_bomb(kinds["gzip_bomb"].inflated_bytes), "gzip"
    elif "gzip" in kinds:
        served, encoding = gzip.compress(served, mtime=0), "gzip"
    trickle = kinds.get("trickle")
    endless = kinds.get("endless")
    return Plan(
        body=served,
        digest=digest,
        stall_after=stall_after,
        truncate_after=truncate_after,
        bytes_per_second=trickle.bytes_per_second if trickle else None,
        # Ranges of an encoded body would be ranges of other bytes: send it whole.
        ignore_range="ignore_range" in kinds or encoding is not None,
        content_length=junk is not None and junk.content_length,
        endless=endless.max_bytes if endless else None,
        content_encoding=encoding,
    )
