"""Provisioning a store into its own schema of a shared PostgreSQL database."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text

from tenantry.db.engines import make_engine
from tenantry.db.master.models import DatabaseStatus, IntegrationConfig
from tenantry.db.shared_schemas import pool_login
from tenantry.errors import Conflict, InvalidInput
from tenantry.operations.provision_shared import provision_shared_store
from tenantry.runtime import Platform
from tenantry.services import stores
from tests.platform_fixtures import platform, settings
from tests.shared_schema_fixtures import SharedDb, shared_db
from tests.tenantry_fixtures import new_slug

__all__ = ["platform", "settings", "shared_db"]


def make_store(platform: Platform, slug: str) -> None:
    with platform.sessions.begin() as session:
        stores.create_store(session, slug=slug, name=slug.title(), actor="cli:test")


def admin_query(database: str, sql: str) -> list[tuple[object, ...]]:
    from tenantry.db.urls import parse_url
    from tests.services.test_moves import admin_url

    engine = make_engine(parse_url(admin_url("postgresql")).set(database=database), pooled=False)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def test_two_stores_get_their_own_schema_identity_and_version_table(
    platform: Platform, shared_db: SharedDb
) -> None:
    a, b = new_slug("sh-a"), new_slug("sh-b")
    make_store(platform, a)
    make_store(platform, b)
    done_a = provision_shared_store(platform, a, shared_db.target, actor="cli:test")
    done_b = provision_shared_store(platform, b, shared_db.target, actor="cli:test")
    assert done_a.database == done_b.database == shared_db.database
    assert done_a.schema != done_b.schema
    for done in (done_a, done_b):
        tables = {
            str(r[0])
            for r in admin_query(
                shared_db.database,
                f"SELECT table_name FROM information_schema.tables "
                f"WHERE table_schema = '{done.schema}'",
            )
        }
        assert {"tenantry_identity", "products", "orders"} <= tables
        assert any(t.startswith("tenantry_") and "version" in t for t in tables)
        identity = admin_query(
            shared_db.database,
            f'SELECT role, instance_id FROM "{done.schema}".tenantry_identity',
        )
        assert identity == [("tenant", done.instance_id)]
    # Nothing went to the public schema, and master records schema and role.
    assert (
        admin_query(
            shared_db.database,
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
        )
        == []
    )
    with platform.sessions() as session:
        store = stores.get_store(session, a)
        assert store.database_status == DatabaseStatus.ACTIVE
        config = session.scalar(
            select(IntegrationConfig).where(IntegrationConfig.store_id == store.id)
        )
        assert config is not None
        assert config.is_active
        assert config.db_schema == done_a.schema
        assert config.config_data["username"] == pool_login(shared_db.database)
        assert "password" not in config.config_data


def test_a_store_provisioned_already_is_refused(platform: Platform, shared_db: SharedDb) -> None:
    slug = new_slug("sh-twice")
    make_store(platform, slug)
    provision_shared_store(platform, slug, shared_db.target, actor="cli:test")
    with pytest.raises(Conflict, match="provisioned already"):
        provision_shared_store(platform, slug, shared_db.target, actor="cli:test")


@pytest.mark.parametrize("backend", ["mysql"])
def test_mariadb_is_refused_with_nothing_recorded(platform: Platform, backend: str) -> None:
    from tests.conftest import require_server
    from tests.services.test_moves import register

    require_server(backend)
    register(platform, "maria", backend)
    slug = new_slug("sh-my")
    make_store(platform, slug)
    with pytest.raises(InvalidInput, match="PostgreSQL only"):
        provision_shared_store(platform, slug, "maria", actor="cli:test")
    with platform.sessions() as session:
        store = stores.get_store(session, slug)
        assert (
            session.scalars(
                select(IntegrationConfig).where(IntegrationConfig.store_id == store.id)
            ).all()
            == []
        )


def test_bad_targets_are_refused(platform: Platform) -> None:
    slug = new_slug("sh-bad")
    make_store(platform, slug)
    with pytest.raises(InvalidInput, match="names no server"):
        provision_shared_store(platform, slug, "/db", actor="cli:test")
    with pytest.raises(InvalidInput, match="shared database name"):
        provision_shared_store(platform, slug, "pg/Bad-Name;", actor="cli:test")


def test_delete_drops_the_stores_schema_and_role_and_leaves_its_neighbours(
    platform: Platform, shared_db: SharedDb
) -> None:
    from sqlalchemy.orm import Session

    from tenantry.db.admin import drop_database
    from tenantry.db.tenant.store.models import Product
    from tenantry.errors import DatabaseAdminError, NotFound
    from tenantry.operations import store_delete
    from tests.tenantry_fixtures import product

    gone, kept = new_slug("del-a"), new_slug("del-b")
    make_store(platform, gone)
    make_store(platform, kept)
    done = provision_shared_store(platform, gone, shared_db.target, actor="cli:test")
    provision_shared_store(platform, kept, shared_db.target, actor="cli:test")
    with platform.sessions() as master:
        engine = platform.router.engine(master, stores.get_store(master, kept))
    with Session(engine) as session, session.begin():
        session.add(product("KEEP-1"))
    plan = store_delete.plan(platform, gone, drop_database=True)
    assert plan.url is not None
    # Dropping "the database" of a shared-schema store would take its neighbours with it.
    with pytest.raises(DatabaseAdminError, match="shared by several stores"):
        drop_database(plan.url)
    report = store_delete.delete(platform, plan, actor="cli:test")
    assert report["database_dropped"] is True
    schemas = {
        str(r[0]) for r in admin_query(shared_db.database, "SELECT nspname FROM pg_namespace")
    }
    assert done.schema not in schemas
    roles = {str(r[0]) for r in admin_query(shared_db.database, "SELECT rolname FROM pg_roles")}
    assert f"ts_{done.schema[2:]}" not in roles
    with platform.sessions() as master, pytest.raises(NotFound):
        stores.get_store(master, gone)
    with platform.sessions() as master:
        engine = platform.router.engine(master, stores.get_store(master, kept))
    with Session(engine) as session:
        assert session.scalars(select(Product.sku)).all() == ["KEEP-1"]


def test_a_move_into_its_own_shared_database_and_credential_rotation_are_refused(
    platform: Platform, shared_db: SharedDb
) -> None:
    from tenantry.operations.credential_rotation import due_stores, rotate_store
    from tenantry.services.move_plan import plan_move

    slug = new_slug("sh-stay")
    make_store(platform, slug)
    provision_shared_store(platform, slug, shared_db.target, actor="cli:test")
    # Moves of shared-schema stores are built (tests/operations/test_shared_moves.py); into
    # the shared database it lives in already is refused naming the flags.
    with platform.sessions() as session, pytest.raises(Conflict, match="--to-own-database"):
        plan_move(
            session,
            platform.box,
            platform.tenant_spec,
            slug,
            shared_db.server,
            shared_database=shared_db.database,
        )
    with pytest.raises(Conflict, match="shared database"):
        rotate_store(platform, slug, actor="cli:test")
    assert slug not in due_stores(platform, older_than=None, legacy=True)


def test_usage_measures_the_stores_schema_not_the_shared_database(
    platform: Platform, shared_db: SharedDb
) -> None:
    from sqlalchemy.orm import Session

    from tenantry.operations.usage_rollup import rollup_store
    from tests.tenantry_fixtures import product

    small, big = new_slug("sz-small"), new_slug("sz-big")
    ids = {}
    for slug in (small, big):
        make_store(platform, slug)
        provision_shared_store(platform, slug, shared_db.target, actor="cli:test")
        with platform.sessions() as master:
            ids[slug] = stores.get_store(master, slug).id
    with platform.sessions() as master:
        engine = platform.router.engine(master, stores.get_store(master, big))
    with Session(engine) as session, session.begin():
        session.add_all([product(f"BIG-{n}") for n in range(3000)])
    small_bytes = rollup_store(platform, ids[small]).storage_bytes
    big_bytes = rollup_store(platform, ids[big]).storage_bytes
    whole = admin_query(shared_db.database, "SELECT pg_database_size(current_database())")
    total = int(str(whole[0][0]))
    assert small_bytes is not None
    assert big_bytes is not None
    assert 0 < small_bytes < big_bytes
    # Each is its schema's share: both together are well under the database (catalogs too).
    assert small_bytes + big_bytes < total
