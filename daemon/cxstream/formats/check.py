"""One entry point for the whole-file container checks, by container name.

Sources that publish no checksum (CXone's Media Playback, Genesys) are
verified by size, container and duration; this gives the fetcher the latter
two for whatever it downloaded, off the event loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cxstream.formats import FormatError
from cxstream.formats.mp4 import check_mp4
from cxstream.formats.ogg import check_opus
from cxstream.formats.wav import check_wav

CONTAINERS = ("mp4", "opus", "wav")


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    container: str
    size: int
    duration_s: float


async def check_file(path: str | os.PathLike[str], container: str) -> ContainerInfo:
    """Check a complete file as ``container`` (mp4, opus, wav); FormatError if it is not one."""
    if container == "mp4":
        mp4 = await check_mp4(path)
        return ContainerInfo(container, mp4.size, mp4.duration_s)
    if container == "opus":
        opus = await check_opus(path)
        return ContainerInfo(container, opus.size, opus.duration_s)
    if container == "wav":
        wav = await check_wav(path)
        return ContainerInfo(container, wav.size, wav.duration_s)
    raise FormatError(f"unknown container {container!r} (one of {', '.join(CONTAINERS)})")
