"""A spare database is handed to a store only when it is the spare the pool recorded: the
unassigned identity is checked and replaced in one transaction, or nothing changes."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from tenantry.db.engines import make_engine
from tenantry.db.identity import SPARE_ROLE, read_identity
from tenantry.db.master.models import Store
from tenantry.db.schemas import tenant_schema
from tenantry.db.spares import assign, make_spare
from tenantry.errors import WrongDatabase


def test_assign_refuses_a_database_that_is_not_the_claimed_spare(tmp_path: Path) -> None:
    spec = tenant_schema("tenantry.db.tenant.store.plugin")
    url = URL.create("sqlite+pysqlite", database=str(tmp_path / "spares" / "s.db"))
    spare_id = str(uuid.uuid4())
    assert make_spare(url, spec, tmp_path / "templates", "tenantry", spare_id)
    store = Store(id=uuid.uuid4(), slug="shop", name="Shop")
    engine = make_engine(url, pool_size=1)
    try:
        with pytest.raises(WrongDatabase, match="spare"), engine.begin() as conn:
            assign(conn, spec, "tenantry", str(uuid.uuid4()), store)  # another spare's id
        with engine.connect() as conn:
            found = read_identity(conn)
            assert found is not None
            assert (found.role, found.instance_id) == (SPARE_ROLE, spare_id)  # unchanged
        with engine.begin() as conn:
            instance = assign(conn, spec, "tenantry", spare_id, store)
        with engine.connect() as conn:
            found = read_identity(conn)
            assert found is not None
            assert (found.role, found.instance_id) == ("tenant", instance)
    finally:
        engine.dispose()
