"""The migration lock is per database: a second migration of one database is refused, while
a migration of another database on the same server goes ahead (MySQL's lock names are
server-wide, so the name must carry the database)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tenantry.db.engines import make_engine
from tenantry.db.locks import (
    bound_lock_waits,
    lock_wait_ran_out,
    migration_lock,
    migration_transaction,
)
from tenantry.db.shared_schemas import schema_url
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


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_ddl_waiting_on_a_held_table_gives_up_after_the_bound(
    backend: str, new_database: DbFactory
) -> None:
    # A backup's snapshot connection holds the table (a read in an open transaction), as
    # when a scheduled backup meets a fleet migration: the DDL must give up, not queue
    # forever (with every other query on the table queued behind it).
    engine = make_engine(new_database("ddl_wait"), pooled=False)
    try:
        with engine.begin() as setup:
            setup.exec_driver_sql("CREATE TABLE products (id INTEGER PRIMARY KEY)")
        with engine.connect() as holder, engine.connect() as migrator:
            holder.begin()
            holder.exec_driver_sql("SELECT count(*) FROM products").scalar_one()
            started = time.monotonic()
            migrator.begin()
            bound_lock_waits(migrator, 1.0)
            with pytest.raises(DBAPIError) as raised:
                migrator.exec_driver_sql("ALTER TABLE products ADD COLUMN note VARCHAR(20)")
            migrator.rollback()
            assert lock_wait_ran_out(raised.value)
            assert time.monotonic() - started < 10
            holder.rollback()
            with migrator.begin():  # the holder gone, the same DDL goes through
                bound_lock_waits(migrator, 1.0)
                migrator.exec_driver_sql("ALTER TABLE products ADD COLUMN note VARCHAR(20)")
    finally:
        engine.dispose()


def _with_schemas(url: URL, *schemas: str) -> URL:
    """``url``, its database given the empty ``schemas`` (stores of a shared database)."""
    setup = make_engine(url, pooled=False)
    try:
        with setup.begin() as conn:
            for schema in schemas:
                conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    finally:
        setup.dispose()
    return url


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_the_lock_of_one_schema_of_a_shared_database_leaves_the_others_free(
    new_database: DbFactory,
) -> None:
    # Stores in schemas of one database (provision --shared): PostgreSQL's advisory locks are
    # per database, so a lock named after the role alone would make them migrate one by one.
    url = _with_schemas(new_database("lock_s"), "s_one", "s_two")
    one, two = (schema_url(url, str(url.database), s) for s in ("s_one", "s_two"))
    engines = [make_engine(u, pooled=False) for u in (one, one, two)]
    try:
        with (
            engines[0].connect() as holder,
            engines[1].connect() as same,
            engines[2].connect() as other,
        ):
            with migration_lock(holder, "tenant"):
                with pytest.raises(Conflict), migration_lock(same, "tenant", wait_s=0.2):
                    pass
                with migration_lock(other, "tenant"):  # no wait: another store's schema
                    pass
            with migration_lock(same, "tenant"):  # released with the block
                pass
    finally:
        for engine in engines:
            engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_migration_transactions_lock_excludes_the_session_lock_and_ends_with_it(
    new_database: DbFactory,
) -> None:
    # On PostgreSQL a migration transaction holds the transaction's advisory lock (released
    # by COMMIT/ROLLBACK, no unlock of its own); `db resolve` and earlier versions hold the
    # session's. Both must exclude each other, per database and per shared-database schema.
    url = _with_schemas(new_database("lock_x"), "s_one")
    engines = [
        make_engine(u, pooled=False)
        for u in (url, url, schema_url(url, str(url.database), "s_one"))
    ]
    try:
        with (
            engines[0].connect() as a,
            engines[1].connect() as b,
            engines[2].connect() as in_schema,
        ):
            with migration_transaction(a, "tenant", lock_timeout_s=1.5):
                assert a.exec_driver_sql("SHOW lock_timeout").scalar() == "1500ms"
                with pytest.raises(Conflict), migration_lock(b, "tenant", wait_s=0.2):
                    pass
                with pytest.raises(Conflict), migration_transaction(b, "tenant", wait_s=0.2):
                    pass
                with migration_transaction(in_schema, "tenant"):  # another store's schema
                    pass
            assert a.exec_driver_sql("SHOW lock_timeout").scalar() == "0"  # SET LOCAL only
            a.rollback()
            with (  # the commit let go
                migration_lock(b, "tenant"),
                pytest.raises(Conflict),
                migration_transaction(a, "tenant", wait_s=0.2),
            ):
                pass
            with pytest.raises(RuntimeError), migration_transaction(a, "tenant"):
                raise RuntimeError("the migration failed")
            with migration_lock(b, "tenant"):  # so did the rollback
                pass

            # A session moved to the schema after connecting (its URL names none): the lock
            # is still its schema's, not the database's.
            b.exec_driver_sql("SET search_path TO s_one")
            b.commit()
            with migration_lock(in_schema, "tenant"):
                with pytest.raises(Conflict), migration_transaction(b, "tenant", wait_s=0.2):
                    pass
                with pytest.raises(Conflict), migration_lock(b, "tenant", wait_s=0.2):
                    pass
                with migration_transaction(a, "tenant"):  # the database's own: free
                    pass
    finally:
        for engine in engines:
            engine.dispose()
