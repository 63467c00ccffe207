"""A local stand-in for a Prometheus remote-write endpoint (New Relic's, Grafana Cloud's, ...).

It accepts what a real ``prometheus`` sends (a snappy-compressed protobuf
``WriteRequest``), decodes it, and prints one line per series received, so the
remote_write route can be tried on one machine without an account. Used for
the trial described in docs/observability.md:

    python3 -m venv /tmp/rw && /tmp/rw/bin/pip install aiohttp cramjam
    /tmp/rw/bin/python docs/examples/remote_write_standin.py 127.0.0.1:9201

The protobuf is decoded by hand (three nested messages, see prometheus/prompb
remote.proto and types.proto): enough to read labels and samples, nothing more.
"""

from __future__ import annotations

import struct
import sys

import cramjam
from aiohttp import web


def _fields(buf: bytes):  # (field number, wire type, value) of one message
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i : i + n], i + n
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"wire type {wire}")
        yield field, wire, value


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def decode(body: bytes) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    series = []
    for field, _, ts in _fields(body):
        if field != 1:  # WriteRequest.timeseries
            continue
        labels: dict[str, str] = {}
        samples: list[tuple[int, float]] = []
        for f, _, value in _fields(ts):
            if f == 1:  # TimeSeries.labels: Label{name=1, value=2}
                parts = {n: v.decode() for n, _, v in _fields(value)}
                labels[parts.get(1, "")] = parts.get(2, "")
            elif f == 2:  # TimeSeries.samples: Sample{value=1 double, timestamp=2 int64}
                parts = dict((n, v) for n, _, v in _fields(value))
                samples.append((parts.get(2, 0), struct.unpack("<d", parts.get(1, bytes(8)))[0]))
        series.append((labels, samples))
    return series


async def write(request: web.Request) -> web.Response:
    assert request.headers.get("Content-Encoding") == "snappy"
    assert request.headers.get("X-Prometheus-Remote-Write-Version", "").startswith("0.1")
    body = bytes(cramjam.snappy.decompress_raw(await request.read()))
    auth = "with" if request.headers.get("Authorization") else "without"
    for labels, samples in decode(body):
        name = labels.pop("__name__", "?")
        if name.startswith("cxstream_"):
            print(f"{name}{labels} {samples[-1][1]}  ({auth} Authorization)", flush=True)
    return web.Response(status=204)


if __name__ == "__main__":
    host, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9201").rsplit(":", 1)
    app = web.Application()
    app.router.add_post("/api/v1/write", write)
    web.run_app(app, host=host, port=int(port), print=None)
