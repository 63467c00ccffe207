"""A throwaway PostgreSQL cluster for the tests (cxstream/devservers/pg.py), skipped if absent.

Each test gets a database of its own (``Cluster.new_database``), so tests
never see each other's rows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from cxstream.devservers import Missing, pg
from cxstream.devservers.pg import Cluster

__all__ = ["Cluster", "cluster"]


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    try:
        pg.check()
    except Missing as exc:
        pytest.skip(str(exc))
    with pg.cluster() as running:
        yield running
