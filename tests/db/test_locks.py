"""The migration lock is per database: a second migration of one database is refused, while
a migration of another database on the same server goes ahead (MySQL's lock names are
server-wide, so the name must carry the database)."""

from __future__ import annotations

import pytest

from tenantry.db.engines import make_engine
from tenantry.db.locks import migration_lock
from tenantry.errors import Conflict
from tests.conftest import DbFactory


@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)
def test_the_lock_of_one_database_leaves_another_free(
    backend: str, new_database: DbFactory
) -> None:
    first, second = new_database("lock_a"), new_database("lock_b")
    engines = [make_engine(url, pooled=False) for url in (first, first, second)]
    try:
        with (
            engines[0].connect() as holder,
            engines[1].connect() as same,
            engines[2].connect() as other,
        ):
            with migration_lock(holder, "tenant"):
                with pytest.raises(Conflict) as refused, migration_lock(same, "tenant", wait_s=0.2):
                    pass
                assert "another migration holds this database's lock" in refused.value.message
                with migration_lock(other, "tenant"):  # no wait: it must be free at once
                    pass
            with migration_lock(same, "tenant"):  # released with the block
                pass
    finally:
        for engine in engines:
            engine.dispose()
