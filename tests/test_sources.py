"""The two real-platform sources end to end in process, against their simulators.

A contact webhook (no recording id, as a CXone Studio script or a Genesys
Data Action sends) fans out to one job per recording; each arrives verified
through the platform's own troubles: "not found yet", transcoding, expired
media URLs, a media host that ignores Range, stalls, cuts and 429s. What the
platform says is gone (archived, deleted) fails naming the state.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from cxstream.sim.platform_servers import GenesysSim, PlaybackSim
from tests.inproc import Rig
from tests.platform_rig import drain, genesys_rig, playback_rig, submit_contact

STALL = {"kind": "stall", "after_bytes": 9000, "on": [1]}
CUT = {"kind": "truncate", "after_bytes": 12000, "on": [1]}


@pytest.fixture
async def playback() -> AsyncIterator[PlaybackSim]:
    async with PlaybackSim() as sim:
        yield sim


@pytest.fixture
async def genesys() -> AsyncIterator[GenesysSim]:
    async with GenesysSim() as sim:
        yield sim


def nothing_downloaded(sim: PlaybackSim | GenesysSim) -> bool:
    return all(stats.requests == 0 for stats in sim.media.stats.values())


def day_of(r: Rig) -> Path:
    (only,) = [p for p in r.cfg.storage.dir.glob("*/*/*") if p.is_dir()]
    return only


# -- CXone Media Playback -----------------------------------------------------------


async def test_a_contact_with_two_files_arrives_whole_through_its_troubles(
    tmp_path: Path, playback: PlaybackSim
) -> None:
    playback.add_contact(
        {
            "id": "5001",
            "not_ready_s": 0.6,
            "faults": [{"kind": "throttle", "retry_after": 0, "on": [2]}],
            "files": [
                {"audio": "call15", "faults": [STALL, {"kind": "expired", "on": [2]}]},
                {"audio": "call30", "range": False, "chunked": True, "faults": [CUT]},
            ],
        }
    )
    async with playback_rig(tmp_path, playback) as r:
        await submit_contact(r, "5001")
        assert await drain(r) == ["5001", "5001-2"]
        day = day_of(r)
        for name, index in (("5001", 1), ("5001-2", 2)):
            assert (day / f"{name}.mp4").read_bytes() == playback.body("5001", index)
            side = orjson.loads((day / f"{name}.json").read_bytes())
            assert side["codec"] == "mp4" and side["contentType"] == "audio/mp4"
            assert "mp4-container" in side["verified_by"] and "read-back" in side["verified_by"]
            assert side["contactId"] == "5001" and side["fileIndex"] == index
            # CXone gives no duration: the sidecar has the container's.
            assert abs(side["durationSeconds"] - 15 * index) < 1
            assert r.row(name)["state"] == "completed"
        for name in ("5001", "5001-2"):
            # Only real failures are attempts: the waits ("not found yet", the
            # 429) are paid from their own budgets, not counted.
            counted = [
                line
                for line in r.trail.find("stream.retry")
                if line["recording_id"] == name
                and not line.get("throttled")
                and not line.get("not_ready")
            ]
            assert r.row(name)["attempts"] == 1 + len(counted)
        waits = [
            x for x in r.trail.find("stream.retry") if x.get("not_ready") or x.get("throttled")
        ]
        assert waits  # the not-found period and the 429 were waited out
        # "Not found yet" and the 429 were waits, the stall and the cut resumes.
        assert r.trail.find("stream.stalled") and r.trail.find("stream.resumed")
        retries = {line["error"].split(":")[0] for line in r.trail.find("stream.retry")}
        assert {"not_found_yet", "media_url_expired"} <= retries
        # The media URL is a credential: its query never reaches a line.
        for line in r.trail.find("stream.request"):
            assert "?" not in line["url"] and line["url"].startswith("http://127.0.0.1:")
    for key in ("5001.1", "5001.2"):
        assert playback.media.stats[key].auth_headers == 0  # no credentials to the media host


async def test_the_api_host_is_taken_from_base_url_when_set(
    tmp_path: Path, playback: PlaybackSim
) -> None:
    playback.add_contact({"id": "77"})
    async with playback_rig(tmp_path, playback, discover=False) as r:
        await submit_contact(r, 77)
        assert await drain(r) == ["77"]
        assert (day_of(r) / "77.mp4").read_bytes() == playback.body("77", 1)


async def test_a_contact_never_found_fails_as_not_ready_after_its_grace(
    tmp_path: Path, playback: PlaybackSim
) -> None:
    playback.add_contact({"id": "5009", "not_ready_s": 3600})
    async with playback_rig(tmp_path, playback, source={"not_ready_grace_s": 1}) as r:
        await submit_contact(r, "5009")
        await drain(r)
        (failed,) = r.trail.find("recording.failed")
        assert failed["error"].startswith("not_ready")
        assert r.row("5009")["state"] == "failed"
    assert nothing_downloaded(playback)


async def test_a_wrong_access_key_fetches_nothing(tmp_path: Path, playback: PlaybackSim) -> None:
    playback.add_contact({"id": "5010"})
    wrong = {"access_key_secret": "not-the-access-key-secret"}
    async with playback_rig(tmp_path, playback, cxone=wrong) as r:
        await submit_contact(r, "5010")
        await drain(r)
        (failed,) = r.trail.find("recording.failed")
        assert failed["error"].startswith("token_http_400")
    assert nothing_downloaded(playback)


# -- Genesys Cloud ------------------------------------------------------------------


async def test_a_conversation_fans_out_and_every_recording_arrives(
    tmp_path: Path, genesys: GenesysSim
) -> None:
    genesys.add_conversation(
        {
            "id": "conv-1",
            "faults": [{"kind": "throttle", "retry_after": 0, "on": [3]}],
            "recording": [
                {"id": "r-opus", "segments": 2, "transcode_s": 0.6, "faults": [STALL]},
                {
                    "id": "r-wav",
                    "formats": ["WAV"],
                    "transcoding_answer": "empty",
                    "transcode_s": 0.3,
                    "range": False,
                    "faults": [CUT, {"kind": "expired", "on": [2]}],
                },
            ],
        }
    )
    async with genesys_rig(tmp_path, genesys) as r:
        await submit_contact(r, "conv-1")
        ran = await drain(r)
        assert ran[0] == "conv-1" and sorted(ran[1:]) == ["r-opus", "r-wav"]
        assert r.trail.find("recording.expanded")[0]["jobs"] == ["r-opus", "r-wav"]
        day = day_of(r)
        assert (day / "r-opus.opus").read_bytes() == genesys.body("r-opus", "OGG_OPUS")
        # OGG_OPUS is not made for r-wav: the next format in preference order.
        assert (day / "r-wav.wav").read_bytes() == genesys.body("r-wav", "WAV")
        side = orjson.loads((day / "r-wav.json").read_bytes())
        assert side["genesysRecordingId"] == "r-wav" and side["conversationId"] == "conv-1"
        assert {"size", "duration", "wav-container"} <= set(side["verified_by"])
        assert r.row("conv-1")["state"] == "completed"
        fallback = r.trail.find("recording.codec_fallback")
        assert [f["recording_id"] for f in fallback] == ["r-wav"]
        retries = {line["error"].split(":")[0] for line in r.trail.find("stream.retry")}
        assert {"transcoding", "media_url_expired"} <= retries
    for key in ("r-opus.OGG_OPUS", "r-wav.WAV"):
        assert genesys.media.stats[key].auth_headers == 0


@pytest.mark.parametrize("state", ["ARCHIVED", "DELETED", "ERROR"])
async def test_a_recording_the_platform_no_longer_has_fails_naming_its_state(
    tmp_path: Path, genesys: GenesysSim, state: str
) -> None:
    genesys.add_conversation({"id": "conv-2", "recording": [{"id": "r-gone", "state": state}]})
    async with genesys_rig(tmp_path, genesys) as r:
        await submit_contact(r, "conv-2", recordingId="r-gone")
        assert await drain(r) == ["r-gone"]
        (failed,) = r.trail.find("recording.failed")
        assert failed["error"].startswith(f"file_state_{state.lower()}")
        assert r.row("r-gone")["state"] == "failed"
    assert nothing_downloaded(genesys)


async def test_a_recording_id_fetches_that_recording_only(
    tmp_path: Path, genesys: GenesysSim
) -> None:
    genesys.add_conversation({"id": "conv-3", "recording": [{"id": "r-1"}, {"id": "r-2"}]})
    async with genesys_rig(tmp_path, genesys) as r:
        await submit_contact(r, "conv-3", recordingId="r-2")
        assert await drain(r) == ["r-2"]
        assert sorted(p.name for p in day_of(r).iterdir()) == ["r-2.json", "r-2.opus"]


async def test_wrong_client_credentials_fetch_nothing(tmp_path: Path, genesys: GenesysSim) -> None:
    genesys.add_conversation({"id": "conv-4", "recording": [{"id": "r-x"}]})
    async with genesys_rig(
        tmp_path, genesys, genesys={"client_secret": "not-the-client-secret"}
    ) as r:
        await submit_contact(r, "conv-4")
        await drain(r)
        (failed,) = r.trail.find("recording.failed")
        assert failed["error"].startswith("token_http_401")
    assert nothing_downloaded(genesys)
