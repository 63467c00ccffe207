"""What no HTTP client sends on purpose: hang-ups, stalls, lies about length, broken framing.

In process (tests/ingress.py), written by hand on a raw socket (``raw_post``).
Each must end in a clear 4xx (or a closed socket), one ``webhook.rejected``
line where the handler ran, nothing journaled, and no traceback in the log:
a client's broken request is its fault, never an internal error of ours.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest

from tests.harness import completed, raw_post, sign_raw
from tests.ingress import Ingress, ingress


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.WARNING)
    yield
    for record in caplog.records:
        assert record.exc_info is None, f"traceback logged: {record.getMessage()}"
        assert "webhook handler failed" not in record.getMessage()


@pytest.fixture
async def ing(tmp_path: Path) -> AsyncIterator[Ingress]:
    async with ingress(tmp_path, webhook={"body_timeout_s": 0.3}) as one:
        yield one


def url(ing: Ingress, path: str = "/webhooks/cxone") -> str:
    return str(ing.client.make_url(path))


async def in_flight(reader: asyncio.StreamReader) -> None:
    """Wait for "100 Continue": aiohttp writes it on its way into the handler, so
    from here the handler is running and waiting for the body."""
    async with asyncio.timeout(5):
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"


async def test_a_client_hanging_up_mid_body_is_a_400_not_an_internal_error(
    ing: Ingress,
) -> None:
    body = completed("rec-x")
    headers = {**sign_raw(body), "Content-Length": str(len(body)), "Expect": "100-continue"}
    reader, writer = await raw_post(url(ing), headers)
    await in_flight(reader)
    writer.write(body[:10])
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    lines = await ing.wait_lines("webhook.rejected")
    assert [(x["status"], x["reason"]) for x in lines] == [(400, "request body incomplete")]
    assert ing.jobs() == []


async def test_a_sender_stalling_mid_body_gets_408(ing: Ingress) -> None:
    body = completed("rec-x")
    headers = {**sign_raw(body), "Content-Length": str(len(body))}
    reader, writer = await raw_post(url(ing), headers, body[:10])
    try:
        async with asyncio.timeout(5):
            status_line = await reader.readline()
    finally:
        writer.close()
    assert status_line.split()[1] == b"408", status_line
    (line,) = ing.lines("webhook.rejected")
    assert (line["status"], line["reason"]) == (408, "request body not received in time")
    assert ing.jobs() == []


async def test_a_huge_content_length_is_refused_before_the_body(ing: Ingress) -> None:
    """413 from the header alone: the daemon does not wait for 1 GB to arrive."""
    headers = {**sign_raw(b"{}"), "Content-Length": "1000000000"}
    reader, writer = await raw_post(url(ing), headers)
    try:
        async with asyncio.timeout(5):
            status_line = await reader.readline()
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"Content-Length: (\d+)", head)
            assert length is not None
            answer = orjson.loads(await reader.readexactly(int(length[1])))
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 413 ")
    (line,) = ing.lines("webhook.rejected")
    assert (line["status"], line["reason"]) == (413, answer["error"])


async def test_broken_chunked_framing_is_a_4xx(ing: Ingress) -> None:
    headers = {**sign_raw(b"{}"), "Transfer-Encoding": "chunked"}
    reader, writer = await raw_post(url(ing), headers, b"zz\r\n")
    try:
        async with asyncio.timeout(5):
            status_line = await reader.readline()
    finally:
        writer.close()
    assert re.match(rb"HTTP/1\.[01] 4\d\d ", status_line), status_line
    assert ing.jobs() == []


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/webhooks/cxone", 405),
        ("PUT", "/webhooks/cxone", 405),
        ("POST", "/webhooks/other", 404),
        ("POST", "/", 404),
    ],
)
async def test_other_routes_and_methods(ing: Ingress, method: str, path: str, status: int) -> None:
    body = completed("rec-x")
    async with ing.client.request(method, path, data=body, headers=sign_raw(body)) as resp:
        assert resp.status == status
    assert ing.jobs() == []
    assert ing.lines() == ing.lines("journal.opened")
