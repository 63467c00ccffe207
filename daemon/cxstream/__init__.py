"""cxstream: archive CXone voice recordings, streamed, verified and announced."""

__version__ = "0.1.0"
