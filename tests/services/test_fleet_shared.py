"""Fleet migrate, verify and status over own-database and shared-schema tenants side by side:
a new revision reaches every store's tables, each shared-schema store's in its own schema,
recorded in its own version table; nothing lands in the shared database's public schema."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from sqlalchemy import inspect, text

from tenantry.db import migrations
from tenantry.db.engines import make_engine
from tenantry.db.shared_schemas import schema_url
from tenantry.db.urls import parse_url
from tenantry.operations.fleet_verify import verify_fleet
from tenantry.operations.provision_shared import SharedProvisioned, provision_shared_store
from tenantry.services import stores
from tenantry.services.fleet_status import fleet_status
from tests.platform_fixtures import platform, settings
from tests.services.test_fleet import F002_NOTE, Fleet, _metadata, tenants
from tests.shared_schema_fixtures import SharedDb, shared_db

__all__ = ["platform", "settings", "shared_db", "tenants"]


def note_columns(database: str, schema: str) -> list[str]:
    from tests.services.test_moves import admin_url

    engine = make_engine(parse_url(admin_url("postgresql")).set(database=database), pooled=False)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("products", schema=schema):
                return []
            return [c["name"] for c in inspect(conn).get_columns("products", schema=schema)]
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_fleet_migrates_own_database_and_shared_schema_tenants_side_by_side(
    tenants: Fleet, shared_db: SharedDb, backend: str
) -> None:
    platform = tenants.platform
    # Two shared-schema stores built from the same tenant schema (at f001) as the four
    # own-database ones the fixture made.
    on_spec = dataclasses.replace(platform, tenant_spec=tenants.spec)
    shared: list[SharedProvisioned] = []
    for label in ("fl-a", "fl-b"):
        slug = f"{label}-{uuid.uuid4().hex[:6]}"
        with platform.sessions.begin() as session:
            stores.create_store(session, slug=slug, name=slug, actor="cli:test")
        shared.append(provision_shared_store(on_spec, slug, shared_db.target, actor="cli:test"))
    assert "note" not in note_columns(shared_db.database, shared[0].schema)

    tenants.write("f002", "f001", F002_NOTE, "note")
    spec = tenants.new_spec(_metadata(note=True))
    with platform.sessions() as session:
        assert fleet_status(session, spec).total == 6
    report = tenants.run()
    assert report.counts == {"migrated": 6}
    for done in shared:
        assert "note" in note_columns(shared_db.database, done.schema)
    assert note_columns(shared_db.database, "public") == []
    for slug in tenants.urls:
        assert tenants.revision_of(slug) == "f002"
    # Verify opens each tenant (each shared one in its schema): identity, revision, no drift.
    checks = verify_fleet(platform.sessions, platform.box, spec)
    assert len(checks) == 6
    assert [c.problems for c in checks if not c.ok] == []
    assert {c.revision for c in checks} == {migrations.head(spec)}
    with platform.sessions() as session:
        status = fleet_status(session, spec)
    assert status.total == 6
    assert status.lagging == []
    assert status.per_revision == {"f002": 6}

    # The shared stores are read on one session per database and thread, moved from schema
    # to schema: a store whose schema drifted is still found, and only that one.
    _in_schema(shared_db.database, shared[1].schema, "DROP INDEX ix_products_note")
    checks = verify_fleet(platform.sessions, platform.box, spec)
    bad = {c.slug: c.problems for c in checks if not c.ok}
    assert list(bad) == [shared[1].slug]
    assert any("add_index" in p and "ix_products_note" in p for p in bad[shared[1].slug])


def _in_schema(database: str, schema: str, sql: str) -> None:
    from tests.services.test_moves import admin_url

    url = parse_url(admin_url("postgresql")).set(database=database)
    engine = make_engine(schema_url(url, database, schema), pooled=False)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()
