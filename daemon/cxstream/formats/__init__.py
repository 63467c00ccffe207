"""Container formats the archive writes or checks: Ogg Opus, RIFF/WAVE and MP4.

Each module checks bytes as they stream (``ogg.OggCheck``, ``wav.PcmCheck``)
and/or a complete file at rest (``check_*_file`` and its ``async`` twin, which
runs in a thread so a large file never blocks the event loop);
``check.check_file`` picks the right one by container name.
"""


class FormatError(ValueError):
    """The bytes break their container format; the message says where and how."""
