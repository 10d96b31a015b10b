"""The migrations of every role build exactly the models' schema, on every backend."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import URL

from tenantry.db import migrations
from tenantry.db.ddl import create_statements
from tenantry.db.identity import read_identity
from tenantry.db.schemas import SchemaSpec, billing_schema, master_schema, tenant_schema
from tenantry.db.urls import backend_of
from tenantry.services import schema_ops
from tests.conftest import DbFactory

SPECS: dict[str, Callable[[], SchemaSpec]] = {
    "master": master_schema,
    "billing": billing_schema,
    "tenant": lambda: tenant_schema("tenantry.db.tenant.store.plugin"),
}


@pytest.mark.parametrize("role", SPECS)
def test_migrated_database_matches_models(
    role: str, new_database: DbFactory, engines: Callable[[URL], Engine]
) -> None:
    spec = SPECS[role]()
    url = new_database(role)
    with engines(url).begin() as conn:
        result = schema_ops.migrate(conn, spec, str(url), acting_app="tenantry", owner="tenantry")
    assert result.to_revision == migrations.head(spec)
    with engines(url).connect() as conn:
        # The same comparison `alembic check` makes, with type comparison on.
        assert migrations.drift(conn, spec) == []
        assert migrations.current(conn, spec) == migrations.head(spec)
        identity = read_identity(conn)
        assert identity is not None
        assert (identity.role, identity.schema_name) == (spec.role.value, spec.name)
        tables = set(inspect(conn).get_table_names())
    assert {t.name for t in spec.metadata.sorted_tables} <= tables
    assert spec.version_table in tables


@pytest.mark.parametrize("role", SPECS)
def test_printed_ddl_is_accepted_and_equals_models(
    role: str, backend: str, new_database: DbFactory, engines: Callable[[URL], Engine]
) -> None:
    spec = SPECS[role]()
    url = new_database(role)
    dialect = backend_of(url)
    with engines(url).begin() as conn:
        for statement in create_statements(spec.metadata, dialect):
            conn.execute(text(statement))
    with engines(url).connect() as conn:
        assert migrations.drift(conn, spec) == []


def test_each_role_keeps_its_own_version_table() -> None:
    tables = {spec().version_table for spec in SPECS.values()}
    assert len(tables) == 3
