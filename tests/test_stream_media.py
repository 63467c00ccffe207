"""Planning is linear and done once: 200,000 segments walked piece by piece.

Before the fetch core's rework, every batch re-planned what was left (quadratic:
100,000 segments were minutes of event-loop time). The timeout marks are
generous; they catch a return of the quadratic walk, not a slow machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cxstream.config import CxoneConfig, Secret
from cxstream.fetcher.cxone import CodecInfo, CxoneClient, RecordingMeta, parse_metadata
from cxstream.fetcher.sources.cxone_stream import StreamMedia
from cxstream.fetcher.token import TokenSource, client_credentials
from cxstream.fetcher.transport import make_session
from cxstream.planner import Segment

SEGMENTS = 200_000


@pytest.fixture
async def client() -> AsyncIterator[CxoneClient]:
    # Nothing listens there: planning never talks to the server.
    config = CxoneConfig(
        base_url="http://127.0.0.1:9",
        token_url="http://127.0.0.1:9/token",
        client_id="c",
        client_secret=Secret("client-secret-for-tests"),
        codecs=("pcm",),
    )
    session = make_session(pool_size=1, connect_timeout_s=1)
    try:
        yield CxoneClient(
            session, config, TokenSource(session, client_credentials(config), config.token_url)
        )
    finally:
        await session.close()


def _meta(count: int, max_segments: int = 3) -> RecordingMeta:
    segments = tuple(Segment(15 * i, 15) for i in range(count))
    return RecordingMeta(
        recording_id="rec-long",
        duration_seconds=15 * count,
        max_duration=180,
        max_segments=max_segments,
        segments=segments,
        codecs={"pcm": CodecInfo("audio/L16", 240_000 * count, "00" * 32)},
    )


def _walk(media: StreamMedia, start: int = 0) -> list[tuple[int, ...]]:
    keys, done = [], start
    while done < media.units:
        piece = media.piece(done)
        keys.append(piece.key)
        done += piece.units
    return keys


@pytest.mark.timeout(60)
async def test_200000_segments_are_planned_once_and_walked_linearly(client: CxoneClient) -> None:
    meta = _meta(SEGMENTS)
    media = StreamMedia(client, meta, meta.segments, "pcm", whole=True)
    keys = _walk(media)
    assert media.plans == 1
    assert len(keys) == -(-SEGMENTS // 3)
    assert keys[0] == (0, 15, 30) and keys[-1] == (15 * (SEGMENTS - 2), 15 * (SEGMENTS - 1))
    flat = [o for key in keys for o in key]
    assert flat == [15 * i for i in range(SEGMENTS)]
    # Walking again (a resumed job asks for the same pieces) plans nothing new.
    assert _walk(media) == keys and media.plans == 1


@pytest.mark.timeout(60)
async def test_a_413_replans_only_what_is_left_once(client: CxoneClient) -> None:
    meta = _meta(SEGMENTS)
    media = StreamMedia(client, meta, meta.segments, "pcm", whole=True)
    half = 3 * (SEGMENTS // 6)
    piece = media.piece(half)
    assert media.narrow(2, piece)
    rest = _walk(media, half)
    assert media.plans == 2
    assert {len(k) for k in rest[:-1]} == {2} and len(rest[-1]) in (1, 2)
    assert [o for k in rest for o in k] == [15 * i for i in range(half, SEGMENTS)]


async def test_a_resume_between_batches_replans_from_there(client: CxoneClient) -> None:
    meta = _meta(10)
    media = StreamMedia(client, meta, meta.segments, "pcm", whole=True)
    assert media.piece(0).key == (0, 15, 30)
    # A checkpoint from a run planned with other limits: position 4 is no batch start here.
    assert media.piece(4).key == (60, 75, 90)
    assert media.plans == 2
    assert not media.narrow(None, media.piece(9))  # one segment cannot shrink


@pytest.mark.timeout(60)
def test_parsing_200000_segments_is_linear_too() -> None:
    raw = {
        "recordingId": "rec-long",
        "maxDuration": 180,
        "maxSegmentsPerRequest": 3,
        "segments": [{"offset": 15 * i, "duration": 15} for i in range(SEGMENTS)],
        "codecs": {"pcm": {"contentType": "audio/L16", "bytes": 1, "sha256": "AB" * 32}},
    }
    meta = parse_metadata(raw, max_segments=SEGMENTS)
    assert len(meta.segments) == SEGMENTS and meta.duration_seconds == 15 * SEGMENTS
    assert meta.codecs["pcm"].sha256 == "ab" * 32
