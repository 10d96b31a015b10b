"""A spare database is handed to a store only when it is the spare the pool recorded: the
unassigned identity is checked and replaced in one transaction, or nothing changes. Spares
live on PostgreSQL servers only: other backends get none."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL

from tenantry.db import admin
from tenantry.db.engines import make_engine
from tenantry.db.identity import SPARE_ROLE, identity_table, read_identity
from tenantry.db.master.models import Store
from tenantry.db.schemas import tenant_schema
from tenantry.db.spares import assign, drop_spare_login, make_spare, new_spare_name, spare_url
from tenantry.db.urls import parse_url
from tenantry.errors import WrongDatabase
from tests.conftest import SERVER_URLS, require_server

SPEC = tenant_schema("tenantry.db.tenant.store.plugin")


def test_assign_refuses_a_database_that_is_not_the_claimed_spare(tmp_path: Path) -> None:
    require_server("postgresql")
    url = spare_url(parse_url(SERVER_URLS["postgresql"]), tmp_path, new_spare_name())
    spare_id = str(uuid.uuid4())
    try:
        assert make_spare(url, SPEC, tmp_path / "templates", "tenantry", spare_id)
        store = Store(id=uuid.uuid4(), slug="shop", name="Shop")
        engine = make_engine(url, pool_size=1)
        try:
            with pytest.raises(WrongDatabase, match="spare"), engine.begin() as conn:
                assign(conn, SPEC, "tenantry", str(uuid.uuid4()), store)  # another spare's id
            with engine.connect() as conn:
                found = read_identity(conn)
                assert found is not None
                assert (found.role, found.instance_id) == (SPARE_ROLE, spare_id)  # unchanged
            with engine.begin() as conn:
                instance = assign(conn, SPEC, "tenantry", spare_id, store)
            with engine.connect() as conn:
                found = read_identity(conn)
                assert found is not None
                assert (found.role, found.instance_id) == ("tenant", instance)
                # The spare's unassigned row became the store's: no second identity remains.
                assert conn.scalar(select(func.count()).select_from(identity_table)) == 1
        finally:
            engine.dispose()
    finally:
        admin.drop_database(url)
        drop_spare_login(url)


@pytest.mark.parametrize("backend", ["sqlite", "mysql"])
def test_no_spare_is_made_off_postgresql(tmp_path: Path, backend: str) -> None:
    """SQLite and MySQL/MariaDB keep no spares: nothing is made, nothing is left."""
    require_server(backend)
    if backend == "sqlite":
        url = URL.create("sqlite+pysqlite", database=str(tmp_path / "spares" / "s.db"))
    else:
        url = parse_url(SERVER_URLS["mysql"]).set(database=new_spare_name())
    assert make_spare(url, SPEC, tmp_path / "templates", "tenantry", str(uuid.uuid4())) is None
    assert not admin.database_exists(url)
