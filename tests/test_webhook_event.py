"""The webhook's parser alone, and the test harness's signer against the library.

Anything JSON gives a job, None (another type) or an ``EventError`` with a
reason: never another exception, never a job whose name could leave its folder.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cxstream.ingress.event import EventError, parse_event
from cxstream.journal import JobRequest
from tests.harness import completed, sign, sign_raw


def test_sign_raw_agrees_with_the_library() -> None:
    body = completed("rec-ok")
    when = datetime.now(UTC)
    assert sign_raw(body, webhook_id="msg_1", when=when) == sign(
        body, webhook_id="msg_1", when=when
    )


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_timestamps = st.one_of(
    _json,
    st.datetimes(timezones=st.timezones()).map(lambda t: t.isoformat()),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0999-01-01"]),
)
_RECORDING_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,5}", fullmatch=True)
_data = st.fixed_dictionaries(
    {},
    optional={
        "recordingId": _RECORDING_ID | _json,
        "contactId": _json,
        "codec": st.sampled_from(["opus", "pcm", "mp3"]) | _json,
        "offsets": st.lists(st.integers(min_value=-1, max_value=100)) | _json,
    },
)
# Valid but for the timestamp, so the date logic is reached on every example.
_valid = st.fixed_dictionaries(
    {
        "type": st.just("recording.completed"),
        "data": st.fixed_dictionaries({"recordingId": _RECORDING_ID}),
        "timestamp": _timestamps,
    }
)


@settings(max_examples=400, deadline=None)
@given(
    doc=st.one_of(
        _json,
        _valid,
        st.fixed_dictionaries(
            {"type": st.just("recording.completed"), "data": _data | _json},
            optional={"timestamp": _timestamps},
        ),
    )
)
def test_parse_event_answers_a_job_none_or_an_event_error(doc: Any) -> None:
    received = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    try:
        job = parse_event(doc, "msg_1", received)
    except EventError:
        return
    if job is None:
        assert isinstance(doc, dict) and doc["type"] != "recording.completed"
        return
    assert isinstance(job, JobRequest)
    assert re.fullmatch(r"\d{4}/\d{2}/\d{2}", job.day), job.day
    assert "/" not in job.recording_id and not job.recording_id.startswith(".")
