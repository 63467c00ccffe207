"""Contract §8's webhook body: ``contactId`` required, ``recordingId`` optional, safe names.

The parser alone for the rules, then the daemon's ingress in process (a
real journal, no workers) for what reaches the journal and the trail.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxstream.ingress.event import EventError, parse_event, safe_name
from tests.harness import completed
from tests.ingress import credentials, ingress

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
WHEN = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
KINDS = ("cxone-playback", "genesys")
GENESYS = {"client_id": "gc-client", "client_secret": "gc-client-secret"}
PLAYBACK = {"access_key_id": "ak-id", "access_key_secret": "ak-secret"}


def _doc(**data: Any) -> dict[str, Any]:
    return {"type": "recording.completed", "timestamp": "2026-11-24T10:00:00Z", "data": data}


# -- safe_name ------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["rec-0001", "c-77", "12345", "a" * 128, "A.b_c-9"])
def test_a_safe_id_is_its_own_name(raw: str) -> None:
    assert safe_name(raw) == (raw, None)


@pytest.mark.parametrize(
    "raw",
    ["conv/1", "../etc/passwd", ".hidden", "-rf", "...", "a b", "réc", "x" * 129, "a\\b", "_x"],
)
def test_an_unsafe_id_is_mapped_deterministically_and_kept(raw: str) -> None:
    name, original = safe_name(raw)
    assert NAME.fullmatch(name), name
    assert original == raw
    assert safe_name(raw) == (name, original)
    assert "/" not in name and not name.startswith(".")


def test_ids_that_clean_up_alike_keep_distinct_names() -> None:
    names = {safe_name(raw)[0] for raw in ("a/b", "a:b", "a b", "a?b", "a_b/")}
    assert len(names) == 5
    # Long ids that differ only past the cut still differ.
    assert safe_name("x" * 200 + "1")[0] != safe_name("x" * 200 + "2")[0]


@settings(max_examples=300, deadline=None)
@given(a=st.text(min_size=1, max_size=300), b=st.text(min_size=1, max_size=300))
def test_safe_name_is_always_a_name_and_never_merges_two_ids(a: str, b: str) -> None:
    for raw in (a, b):
        assert NAME.fullmatch(safe_name(raw)[0])
    if a != b:
        assert safe_name(a)[0] != safe_name(b)[0]


# -- the parser per source kind ------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_contact_alone_names_a_contact_job(kind: str) -> None:
    job = parse_event(_doc(contactId="c-77"), None, WHEN, kind)
    assert job is not None
    assert (job.recording_id, job.contact_id, job.original_name) == ("c-77", "c-77", None)
    assert (job.scope, job.codec, job.offsets, job.webhook_id) == ("contact", None, None, None)
    assert job.day == "2026/11/24"


@pytest.mark.parametrize("kind", KINDS)
def test_an_integer_contact_id_is_kept_as_a_string(kind: str) -> None:
    job = parse_event(_doc(contactId=584732910), "msg_1", WHEN, kind)
    assert job is not None and job.contact_id == "584732910" == job.recording_id


def test_a_recording_id_names_the_job_and_scopes_it_per_platform() -> None:
    genesys = parse_event(_doc(contactId="conv-1", recordingId="r-9"), None, WHEN, "genesys")
    assert genesys is not None
    assert (genesys.recording_id, genesys.contact_id, genesys.scope) == (
        "r-9",
        "conv-1",
        "recording",
    )
    # CXone's playback API has no recording id: the contact is looked up all the same.
    playback = parse_event(_doc(contactId="77", recordingId="r-9"), None, WHEN, "cxone-playback")
    assert playback is not None
    assert (playback.recording_id, playback.contact_id, playback.scope) == ("r-9", "77", "contact")


def test_an_unsafe_id_is_mapped_and_its_original_kept() -> None:
    job = parse_event(_doc(contactId="conv/1 2"), None, WHEN, "genesys")
    assert job is not None
    assert NAME.fullmatch(job.recording_id) and job.recording_id.startswith("conv_1_2-")
    assert (job.original_name, job.contact_id) == ("conv/1 2", "conv/1 2")
    job = parse_event(_doc(contactId="c", recordingId="rec 1"), None, WHEN, "genesys")
    assert job is not None and job.original_name == "rec 1"


BAD: dict[str, dict[str, Any]] = {
    "no-contact": {"recordingId": "r-1"},
    "contact-null": {"contactId": None},
    "contact-empty": {"contactId": ""},
    "contact-bool": {"contactId": True},
    "contact-float": {"contactId": 7.5},
    "contact-list": {"contactId": ["c"]},
    "contact-too-long": {"contactId": "c" * 257},
    "contact-control": {"contactId": "c\n1"},
    "recording-number": {"contactId": "c", "recordingId": 7},
    "recording-empty": {"contactId": "c", "recordingId": ""},
    "offsets": {"contactId": "c", "offsets": [0, 15]},
    "codec": {"contactId": "c", "codec": "opus"},
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_contact_body_is_an_event_error(kind: str, case: str) -> None:
    with pytest.raises(EventError):
        parse_event(_doc(**BAD[case]), None, WHEN, kind)


def test_offsets_are_refused_by_name() -> None:
    with pytest.raises(EventError, match=r"^data\.offsets is for source\.kind cxone-stream only$"):
        parse_event(_doc(contactId="c", offsets=[0]), None, WHEN, "genesys")


def test_cxone_stream_keeps_its_rules() -> None:
    # recordingId required, contactId a string: §2 unchanged.
    with pytest.raises(EventError):
        parse_event(_doc(contactId="c-1"), "msg_1", WHEN)
    with pytest.raises(EventError):
        parse_event(_doc(recordingId="r-1", contactId=77), "msg_1", WHEN)
    with pytest.raises(EventError):
        parse_event(_doc(recordingId="conv/1"), "msg_1", WHEN)
    job = parse_event(_doc(recordingId="r-1", offsets=[0, 15]), "msg_1", WHEN)
    assert job is not None and (job.scope, job.original_name) == ("recording", None)


# -- through the ingress, into the journal ----------------------------------------------


async def test_contact_webhooks_through_the_ingress(tmp_path: Path) -> None:
    async with ingress(
        tmp_path, "basic", source={"kind": "genesys"}, sections={"genesys": GENESYS}
    ) as ing:

        async def post(**data: Any) -> tuple[int, Any]:
            body = orjson.dumps(_doc(**data))
            code, doc, _ = await ing.post(body, credentials("basic", body))
            return code, doc

        assert await post(contactId="conv-1") == (202, {"status": "accepted"})
        # The same contact again, queued then running: nothing new.
        assert await post(contactId="conv-1") == (200, {"status": "duplicate"})
        job = await ing.journal.claim()
        assert job is not None
        assert (job.recording_id, job.scope, job.original_name) == ("conv-1", "contact", None)
        assert await post(contactId="conv-1") == (200, {"status": "duplicate"})
        # One recording of it is a job of its own.
        assert (await post(contactId="conv-1", recordingId="rec-7"))[0] == 202
        assert (await post(contactId="conv/2"))[0] == 202
        code, doc = await post(contactId="conv-3", offsets=[0])
        assert code == 400 and "cxone-stream" in doc["error"]
        code, doc = await post(recordingId="rec-8")
        assert (code, doc["error"]) == (400, "data.contactId is required")

        rows = {r["recording_id"]: r for r in ing.jobs()}
        assert rows["rec-7"]["scope"] == "recording" and rows["rec-7"]["contact_id"] == "conv-1"
        mapped = next(r for r in rows.values() if r["contact_id"] == "conv/2")
        assert mapped["original_name"] == "conv/2" and mapped["scope"] == "contact"
        assert NAME.fullmatch(mapped["recording_id"])
        # The journal hands both to the worker that claims the job.
        claimed = [await ing.journal.claim(), await ing.journal.claim()]
        by_name = {j.recording_id: j for j in claimed if j is not None}
        assert by_name[mapped["recording_id"]].original_name == "conv/2"
        assert by_name["rec-7"].scope == "recording"

        accepted = {line["recording_id"]: line for line in ing.lines("webhook.accepted")}
        assert accepted[mapped["recording_id"]]["original_name"] == "conv/2"
        assert accepted["conv-1"]["scope"] == "contact" and accepted["conv-1"]["webhook_id"] is None
        assert accepted["conv-1"]["contact_id"] == "conv-1"


async def test_a_stream_body_is_refused_by_a_contact_source(tmp_path: Path) -> None:
    async with ingress(
        tmp_path, "bearer", source={"kind": "cxone-playback"}, sections={"cxone": PLAYBACK}
    ) as ing:
        body = completed("rec-1")
        code, doc, _ = await ing.post(body, credentials("bearer", body))
        assert (code, doc) == (400, {"error": "data.contactId is required"})
        assert ing.jobs() == []


def test_a_stream_contact_id_with_control_characters_is_refused() -> None:
    doc = {"type": "recording.completed", "data": {"recordingId": "r-1", "contactId": "c\n7"}}
    with pytest.raises(EventError, match="control characters"):
        parse_event(doc, "msg-1", WHEN, "cxone-stream")
