"""An S3 endpoint for the tests: moto's server on loopback (cxstream/devservers/s3.py).

moto checks ``x-amz-checksum-sha256`` here the way AWS does (the dev
server's middleware), and multipart parts may be as small as
``TEST_PART_BYTES`` so that multipart uploads stay light.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from cxstream.devservers import s3

# Parts this small keep the tests light; S3 itself wants 5 MiB (the daemon uses 8).
TEST_PART_BYTES = 64 * 1024


@contextlib.contextmanager
def running(**env: str) -> Iterator[str]:
    """Start the server; yields its endpoint URL, stops it afterwards."""
    with s3.running(S3_UPLOAD_PART_MIN_SIZE=str(TEST_PART_BYTES), **env) as url:
        yield url
