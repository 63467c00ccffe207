"""Back-pressure: past ``streams.max_queued`` waiting jobs the webhook answers 503 +
Retry-After ("queue full"), and accepts again once the queue is below the cap."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from cxstream.ingress.backpressure import Admission, queue_full
from cxstream.sim.server import SimServer
from tests.conftest import StartDaemon
from tests.harness import completed, sign
from tests.ingress import JSON, credentials, ingress


def test_admission_is_full_at_the_cap_and_never_without_one() -> None:
    assert not Admission(0, queued=10**9).full
    assert not Admission(3, queued=2).full
    assert Admission(3, queued=3).full and Admission(3, queued=4).full


class _Queue:
    """A journal whose queue length the test sets, counting how often it is asked."""

    def __init__(self) -> None:
        self.count = 0
        self.asked = 0

    async def queued(self) -> tuple[int, float | None]:
        self.asked += 1
        return self.count, None


async def test_each_202_counts_at_once_and_a_refusal_recounts() -> None:
    journal = _Queue()
    admission = Admission(max_queued=2, recount_s=0.0)
    admission.accepted()
    admission.accepted()
    # Accepting costs no query; the cap counts the burst itself.
    assert admission.full and journal.asked == 0
    journal.count = 2
    assert await queue_full(admission, journal)  # type: ignore[arg-type]
    assert journal.asked == 1
    journal.count = 1  # a worker took one: let in at once
    assert not await queue_full(admission, journal)  # type: ignore[arg-type]
    # Within recount_s and with nothing accepted since, a refusal reuses the
    # count (a flood is not a COUNT per request); an accept forces a recount.
    admission.recount_s = 60.0
    admission.queued, journal.count = 2, 0
    assert await queue_full(admission, journal)  # type: ignore[arg-type]
    asked = journal.asked
    assert await queue_full(admission, journal) and journal.asked == asked  # type: ignore[arg-type]
    admission.accepted()
    assert not await queue_full(admission, journal)  # type: ignore[arg-type]
    assert journal.asked == asked + 1


async def test_a_stranger_learns_nothing_of_a_full_queue(tmp_path: Path) -> None:
    """Peer and credential checks come first: only a caller who may post hears "full"."""
    async with ingress(tmp_path, "bearer", streams={"max_queued": 1}) as ing:
        body = completed("rec-1")
        assert (await ing.post(body, credentials("bearer", body)))[0] == 202
        body = completed("rec-2")
        status, doc, _ = await ing.post(body, credentials("bearer", body))
        assert (status, doc["reason"]) == (503, "queue full")
        wrong = {"Authorization": "Bearer not-the-token-0123456789", **JSON}
        assert (await ing.post(body, wrong))[0] == 401


async def test_queue_full_answers_503_then_accepts_below_the_cap(
    sim: SimServer, start_daemon: StartDaemon, http: aiohttp.ClientSession
) -> None:
    # One worker, held for about two seconds by a slow recording.
    sim.add_recording(
        {
            "id": "rec-hold",
            "segments": 2,
            "codecs": ["opus"],
            "faults": [{"kind": "trickle", "bytes_per_second": 20000}],
        }
    )
    for rid in ("rec-a", "rec-b", "rec-c"):
        sim.add_recording({"id": rid, "segments": 1, "codecs": ["opus"]})
    daemon = await start_daemon(streams={"concurrency": 1, "max_queued": 2})
    assert (await daemon.post(http, completed("rec-hold")))[0] == 202
    await daemon.wait_event("recording.started", recording_id="rec-hold")
    assert (await daemon.post(http, completed("rec-a")))[0] == 202
    assert (await daemon.post(http, completed("rec-b")))[0] == 202
    # Two wait: the third is refused, with the reason and when to come back.
    body = completed("rec-c")
    async with http.post(daemon.webhook_url, data=body, headers=sign(body)) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "5"
        assert await resp.json() == {"error": "unavailable", "reason": "queue full"}
    rejected = await daemon.wait_event("webhook.rejected", reason="queue full")
    assert rejected["status"] == 503
    # Once the worker takes rec-a, a sender retrying (faster than Retry-After
    # here) is let in: within the 0.1 s a refusal's count may be reused.
    await daemon.wait_event("recording.started", recording_id="rec-a", timeout_s=30)
    answers = []
    for _ in range(20):
        answers.append((await daemon.post(http, completed("rec-c")))[0])
        if answers[-1] != 503:
            break
        await asyncio.sleep(0.05)  # the sender's back-off between tries
    assert answers[-1] == 202 and len(answers) <= 4, answers
    for rid in ("rec-hold", "rec-a", "rec-b", "rec-c"):
        await daemon.wait_event("recording.completed", recording_id=rid)
    async with http.get(f"{daemon.admin_url}/metrics") as resp:
        text = await resp.text()
    assert 'cxstream_webhooks_total{outcome="rejected_503"}' in text


@pytest.mark.parametrize("value", ["-1", "lots"])
def test_max_queued_is_validated(value: str) -> None:
    from cxstream.config import ConfigError, load
    from tests.harness import WEBHOOK_SECRET

    env = {
        "CXSTREAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CXSTREAM_CXONE_BASE_URL": "https://cx.example",
        "CXSTREAM_CXONE_TOKEN_URL": "https://cx.example/t",
        "CXSTREAM_CXONE_CLIENT_ID": "id",
        "CXSTREAM_CXONE_CLIENT_SECRET": "s",
        "CXSTREAM_STREAMS_MAX_QUEUED": value,
    }
    with pytest.raises(ConfigError, match=r"streams\.max_queued"):
        load(None, env)
    assert load(None, {**env, "CXSTREAM_STREAMS_MAX_QUEUED": "500"}).streams.max_queued == 500
