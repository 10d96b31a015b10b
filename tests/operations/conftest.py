"""Fixtures of the operations tests: a master database at head on each backend, and kits on
it as separate processes would have them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import sessionmaker

from tenantry.db.engines import make_engine
from tenantry.db.schemas import master_schema
from tenantry.operations.kit import OperationKit
from tests.conftest import DbFactory
from tests.templates import migrated_database

#: The kits' lease: short, so a test can wait one out.
LEASE_S = 1.5


@pytest.fixture
def master_url(new_database: DbFactory) -> URL:
    """A master database at head on the backend (copied from a migrated template)."""
    url = new_database("master", create=False)
    migrated_database(url, master_schema())
    return url


@pytest.fixture
def kits(master_url: URL) -> Iterator[Callable[..., OperationKit]]:
    """Kits as separate processes would have them: each its own engine and holder name."""
    made: list[Engine] = []

    def make(lease_s: float = LEASE_S, holder: str | None = None) -> OperationKit:
        engine = make_engine(master_url, pool_size=2)
        made.append(engine)
        return OperationKit(
            sessionmaker(engine, expire_on_commit=False), lease_seconds=lease_s, holder=holder
        )

    yield make
    for engine in made:
        engine.dispose()
