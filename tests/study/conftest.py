"""One throwaway PostgreSQL server for the storage tests (skipped where none can be started)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from robust_hpo.testing import PostgresUnavailable, throwaway_postgres

_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Callable[[str], str]]:
    """``database(name) -> URL`` on a server started once per session (``.ci/run`` installs PostgreSQL)."""
    try:
        with throwaway_postgres() as database:
            yield database
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def postgres_url(postgres_server: Callable[[str], str]) -> str:
    """A fresh, empty database on the throwaway server."""
    return postgres_server(f"robust_hpo_{next(_names)}")
