"""The simulator's cache of served bodies: the same bytes and digest as built afresh, bounded."""

from __future__ import annotations

import pytest

from cxstream.sim import audio
from cxstream.sim.audio import AudioLibrary
from cxstream.sim.faults import repr_digest
from cxstream.sim.spec import RecordingSpec


def test_served_bodies_are_the_true_bodies_and_pcm_is_shared() -> None:
    lib = AudioLibrary()
    a, b = RecordingSpec(id="a", segments=6), RecordingSpec(id="b", segments=6)
    for spec, codec, indices in ((a, "pcm", (0, 1, 2)), (a, "opus", (3, 4)), (b, "opus", (3, 4))):
        body, digest = lib.served(spec, codec, indices)
        assert body == lib.body(spec, codec, indices)
        assert digest == repr_digest(body)
    # PCM is the same for every recording: one cached body serves both.
    assert lib.served(b, "pcm", (4, 5, 6 % 4))[0] is lib.served(a, "pcm", (0, 1, 2))[0]
    # Opus carries per-recording serial numbers: never shared.
    assert lib.served(a, "opus", (3, 4))[0] != lib.served(b, "opus", (3, 4))[0]


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio, "SERVED_CACHE_BYTES", 60_000)
    lib = AudioLibrary()
    spec = RecordingSpec(id="r", segments=12)
    for i in range(10):
        lib.served(spec, "opus", (i,))
    assert lib._served_bytes <= 60_000
    assert len(lib._served) < 10
