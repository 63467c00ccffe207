"""A CXone simulator: the recording API of contract §1 and the archive sink of §3.

Every fault of §1.3 can be switched on per recording and per request, so the
daemon's failure handling can be tested against real sockets.
"""

from cxstream.sim.corpus import default_corpus, load_corpus
from cxstream.sim.server import (
    DEFAULT_ARCHIVE_SECRET,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    SimServer,
    build_sim_app,
)
from cxstream.sim.spec import FaultSpec, RecordingSpec, recording_from_dict
from cxstream.sim.state import Announcement, RecordingStats, RequestLog, SimState

__all__ = [
    "DEFAULT_ARCHIVE_SECRET",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "Announcement",
    "FaultSpec",
    "RecordingSpec",
    "RecordingStats",
    "RequestLog",
    "SimServer",
    "SimState",
    "build_sim_app",
    "default_corpus",
    "load_corpus",
    "recording_from_dict",
]
