"""Reading a database's identity and revision in one statement, on every backend."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from tenantry.db import migrations
from tenantry.db.identity import stamp_identity
from tenantry.db.probe import probe
from tenantry.db.schemas import master_schema
from tenantry.errors import MigrationError
from tests.conftest import DbFactory
from tests.templates import migrated_database

Engines = Callable[[URL], Engine]


@pytest.fixture
def master_engine(new_database: DbFactory, engines: Engines) -> Engine:
    """An engine on a new database migrated to the master schema's head."""
    url = new_database("master", create=False)
    migrated_database(url, master_schema())
    engine = engines(url)
    return engine


def test_a_migrated_database_reads_as_its_role_and_head(master_engine: Engine) -> None:
    spec = master_schema()
    with master_engine.connect() as conn:
        identity, revision = probe(conn, spec)
        assert identity is not None
        assert identity.role == "master"
        assert identity.schema_name == spec.name
        assert identity.owner_app == "tenantry"
        assert revision == migrations.head(spec)
        assert not conn.in_transaction()
        # The probe's autocommit (PostgreSQL) is undone: a rolled-back change stays undone.
        conn.execute(text(f"DELETE FROM {spec.version_table}"))
        conn.rollback()
        assert conn.scalar(text(f"SELECT count(*) FROM {spec.version_table}")) == 1


def test_an_empty_database_has_neither_identity_nor_revision(
    new_database: DbFactory, engines: Engines
) -> None:
    engine = engines(new_database("empty"))
    with engine.connect() as conn:
        assert probe(conn, master_schema()) == (None, None)
        assert not conn.in_transaction()


def test_an_identity_without_a_version_table_is_at_base(
    new_database: DbFactory, engines: Engines
) -> None:
    spec = master_schema()
    engine = engines(new_database("stamped"))
    with engine.begin() as conn:
        stamped = stamp_identity(conn, spec, "tenantry")
    with engine.connect() as conn:
        identity, revision = probe(conn, spec)
    assert identity is not None
    assert identity.instance_id == stamped.instance_id
    assert revision is None


def test_several_recorded_revisions_are_refused_by_name(master_engine: Engine) -> None:
    spec = master_schema()
    with master_engine.begin() as conn:
        conn.execute(text(f"INSERT INTO {spec.version_table} (version_num) VALUES ('zzz1')"))
    with master_engine.connect() as conn, pytest.raises(MigrationError) as refused:
        probe(conn, spec)
    assert "zzz1" in refused.value.message
    assert "several heads" in refused.value.message
