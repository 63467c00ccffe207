"""An S3 endpoint: moto's server, in a process of its own, on loopback.

``python -m cxstream.devservers.s3`` binds 127.0.0.1 on a port the kernel
picks and prints ``PORT <n>`` once it listens. moto speaks the S3 HTTP
protocol with Object Lock, legal holds, SSE headers, multipart uploads and
conditional writes, and stores ``x-amz-checksum-sha256`` values, but (moto
5.x) does not yet check a given checksum against the bytes, which AWS does.
So this server adds exactly that check, the way AWS answers it (400
``BadDigest``), for PutObject and UploadPart. Everything else is moto's; its
objects live in that process's memory and end with it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.util
import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from cxstream.devservers import Missing

# Any key pair will do for moto; the daemon still signs every request with it.
ACCESS_KEY_ID = "cxstream-dev"
SECRET_ACCESS_KEY = "cxstream-dev-secret-not-a-real-one"
REGION = "us-east-1"

BAD_DIGEST = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>BadDigest</Code>'
    b"<Message>The SHA256 you specified did not match the calculated checksum.</Message>"
    b"</Error>"
)


class VerifyChecksums:
    """WSGI middleware: a PUT whose body does not hash to its x-amz-checksum-sha256 is refused."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        claimed = environ.get("HTTP_X_AMZ_CHECKSUM_SHA256")
        chunked = "aws-chunked" in environ.get("HTTP_CONTENT_ENCODING", "")
        if environ["REQUEST_METHOD"] == "PUT" and claimed and not chunked:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            actual = base64.b64encode(hashlib.sha256(body).digest()).decode()
            if actual != claimed:
                start(
                    "400 Bad Request",
                    [("Content-Type", "application/xml"), ("Content-Length", str(len(BAD_DIGEST)))],
                )
                return [BAD_DIGEST]
            environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start)


def main() -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    app = VerifyChecksums(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, app, True, request_handler=MotoRequestHandler)
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdout.close()
    server.serve_forever()


def check() -> None:
    """``Missing`` when moto's server cannot run here."""
    for module in ("moto", "werkzeug", "flask", "flask_cors"):
        if importlib.util.find_spec(module) is None:
            raise Missing(f"{module} not installed (pip install -e '.[test]')")


@contextlib.contextmanager
def running(**env: str) -> Iterator[str]:
    """Start the server; yields its endpoint URL, stops it afterwards."""
    check()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cxstream.devservers.s3"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()  # blocks until it listens, or exits
        if not line.startswith("PORT "):
            raise RuntimeError(f"the S3 dev server did not start (exit {proc.wait(5)})")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def make_bucket(endpoint: str, bucket: str, *, object_lock: bool = False) -> None:
    from aiobotocore.session import get_session

    async with get_session().create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    ) as client:
        await client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=object_lock)


if __name__ == "__main__":
    main()
