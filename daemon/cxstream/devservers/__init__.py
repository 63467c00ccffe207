"""Throwaway servers for the tests and the cluster demo: PostgreSQL and an S3 endpoint.

Both run on loopback only, on ports the kernel picked, in temporary
directories removed afterwards. Neither is for production: PostgreSQL runs
with ``fsync=off`` and trust authentication, the S3 endpoint is moto's
in-memory server. ``Missing`` says in one line what is not installed.
"""

from __future__ import annotations


class Missing(Exception):
    """A dev server cannot run here: its binaries or its Python package are not installed."""
