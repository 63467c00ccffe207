"""Webhook load generator: ``python -m tests.bench.sender``, a process of its own.

The point is to measure the daemon, not an HTTP client, so every request is
signed and serialised before the clock starts and each sender is a bare
keep-alive connection (asyncio streams, write the bytes, read one response).
Its own CPU time is reported: on two shared cores it competes with the daemon.

Prints one JSON object on stdout: counts by status, wall time, latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import resource
import sys
import threading
import time
from urllib.parse import urlsplit

import orjson


def build_requests(
    url: str, secret: str, count: int, prefix: str, auth: str | None = None
) -> list[bytes]:
    """``count`` complete HTTP/1.1 requests, each a distinct recording, signed now."""
    parts = urlsplit(url)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    ts = str(int(time.time()))
    out = []
    for i in range(count):
        body = orjson.dumps(
            {
                "type": "recording.completed",
                "timestamp": "2026-11-24T10:00:00Z",
                "data": {"recordingId": f"{prefix}{i:07d}"},
            }
        )
        wid = f"msg_{prefix}{i:07d}"
        mac = hmac.new(key, f"{wid}.{ts}.".encode() + body, hashlib.sha256).digest()
        head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"webhook-id: {wid}\r\nwebhook-timestamp: {ts}\r\n"
            f"webhook-signature: v1,{base64.b64encode(mac).decode()}\r\n"
        )
        if auth:
            head += f"Authorization: {auth}\r\n"
        out.append(head.encode() + b"\r\n" + body)
    return out


async def _one_connection(
    host: str,
    port: int,
    requests: list[bytes],
    cursor: list[int],
    latencies: list[float],
    finished: list[float],
    statuses: dict[int, int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while cursor[0] < len(requests):  # another line on stdin moves it to the end
            req = requests[cursor[0]]
            cursor[0] += 1
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            finished.append(time.time())
            statuses[status] = statuses.get(status, 0) + 1
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def send(
    requests: list[bytes], url: str, concurrency: int, stop_on_stdin: bool = False
) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    cursor = [0]
    if stop_on_stdin:
        # A line ("stop"): each connection ends after its current request. EOF
        # (the caller just waits for the end) stops nothing.
        def stop() -> None:
            if sys.stdin.readline():
                cursor[0] = len(requests)

        threading.Thread(target=stop, daemon=True).start()
    latencies: list[float] = []
    finished: list[float] = []  # wall-clock time of each answer, to cut a window
    statuses: dict[int, int] = {}
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    started = time.time()
    await asyncio.gather(
        *(
            _one_connection(host, port, requests, cursor, latencies, finished, statuses)
            for _ in range(concurrency)
        )
    )
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "count": len(latencies),
        "concurrency": concurrency,
        "started": started,
        "wall_s": wall,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "latencies_ms": [round(x * 1000, 3) for x in latencies],
        "finished": finished,
        "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.bench.sender")
    p.add_argument("--url", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--prefix", default="wh-")
    p.add_argument(
        "--wait", action="store_true", help="send once a line arrives on stdin, stop at the next"
    )
    args = p.parse_args(argv)
    requests = build_requests(args.url, args.secret, args.count, args.prefix)
    # Ready: the caller can start its clock (and other load) now.
    sys.stderr.write("ready\n")
    sys.stderr.flush()
    if args.wait:
        sys.stdin.readline()
    result = asyncio.run(send(requests, args.url, args.concurrency, stop_on_stdin=args.wait))
    sys.stdout.buffer.write(orjson.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
