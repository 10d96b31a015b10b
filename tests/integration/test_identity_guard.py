"""The wrong-database guard, adoption and ownership, on every backend."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import URL

from tenantry.db import migrations
from tenantry.db.identity import read_identity
from tenantry.db.schemas import SchemaSpec, billing_schema, master_schema
from tenantry.errors import NotOwner, SchemaMismatch, UnidentifiedDatabase, WrongDatabase
from tenantry.services import schema_ops
from tests.conftest import DbFactory
from tests.helpers import schema_snapshot

Engines = Callable[[URL], Engine]


def _migrate(
    engine: Engine,
    spec: Callable[[], SchemaSpec] = master_schema,
    app: str = "tenantry",
) -> schema_ops.MigrationResult:
    with engine.begin() as conn:
        return schema_ops.migrate(conn, spec(), str(engine.url), acting_app=app, owner="tenantry")


def test_billing_migration_on_master_is_refused_and_changes_nothing(
    new_database: DbFactory, engines: Engines
) -> None:
    engine = engines(new_database("master"))
    _migrate(engine)
    with engine.connect() as conn:
        before = schema_snapshot(conn)
    with pytest.raises(WrongDatabase) as refused:
        _migrate(engine, billing_schema)
    assert "expected a billing database" in refused.value.message
    assert "found a master database" in refused.value.message
    with engine.connect() as conn:
        assert schema_snapshot(conn) == before


def test_non_empty_database_without_identity_is_refused_untouched(
    new_database: DbFactory, engines: Engines
) -> None:
    engine = engines(new_database("legacy"))
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
        before = schema_snapshot(conn)
    with pytest.raises(UnidentifiedDatabase) as refused:
        _migrate(engine, billing_schema)
    assert "invoices" in refused.value.message
    assert "tenantry db adopt --role billing" in (refused.value.hint or "")
    with engine.connect() as conn:
        assert schema_snapshot(conn) == before


def test_consumer_app_cannot_migrate_but_can_check(
    new_database: DbFactory, engines: Engines
) -> None:
    engine = engines(new_database("billing"))
    with pytest.raises(NotOwner):
        _migrate(engine, billing_schema, app="client-portal")
    with engine.connect() as conn:
        assert schema_snapshot(conn) == {}  # not even the identity was written
    _migrate(engine, billing_schema)
    with engine.connect() as conn:
        result = schema_ops.check(conn, billing_schema(), "billing")
    assert result.ok, result.problems


def test_check_reports_drift_and_lagging_revision(
    new_database: DbFactory, engines: Engines
) -> None:
    engine = engines(new_database("billing"))
    _migrate(engine, billing_schema)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE billing_customers ADD COLUMN nickname VARCHAR(20)"))
    with engine.connect() as conn:
        drifted = schema_ops.check(conn, billing_schema(), "billing")
    assert not drifted.ok
    assert any("billing_customers.nickname" in p for p in drifted.problems)

    with engine.begin() as conn:
        conn.execute(text("UPDATE tenantry_billing_version SET version_num = 'ffff'"))
    with engine.connect() as conn:
        lagging = schema_ops.check(conn, billing_schema(), "billing")
    assert not lagging.ok
    assert "revision ffff" in lagging.problems[0]


def test_adopt_stamps_a_matching_database_and_refuses_a_different_one(
    new_database: DbFactory, engines: Engines
) -> None:
    spec = master_schema()
    matching = engines(new_database("adopt"))
    with matching.begin() as conn:
        spec.metadata.create_all(conn)
    with matching.begin() as conn:
        result = schema_ops.adopt(conn, spec, "m", owner="tenantry")
    assert result.adopted
    with matching.connect() as conn:
        identity = read_identity(conn)
        assert identity is not None
        assert identity.role == "master"
        assert migrations.current(conn, spec) == migrations.head(spec)
    with matching.begin() as conn:  # adopting twice changes nothing
        assert not schema_ops.adopt(conn, spec, "m", owner="tenantry").adopted

    different = engines(new_database("adopt"))
    with different.begin() as conn:
        spec.metadata.create_all(conn)
        conn.execute(text("DROP TABLE api_usage_logs"))
        before = schema_snapshot(conn)
    with pytest.raises(SchemaMismatch) as refused, different.begin() as conn:
        schema_ops.adopt(conn, spec, "m", owner="tenantry")
    assert "api_usage_logs" in refused.value.message
    with different.connect() as conn:
        assert schema_snapshot(conn) == before


def test_migrating_twice_changes_nothing(new_database: DbFactory, engines: Engines) -> None:
    engine = engines(new_database("master"))
    first = _migrate(engine)
    assert first.applied
    assert first.stamped_identity is not None
    with engine.connect() as conn:
        before = schema_snapshot(conn)
    second = _migrate(engine)
    assert second.applied == []
    assert second.stamped_identity is None
    with engine.connect() as conn:
        assert schema_snapshot(conn) == before
