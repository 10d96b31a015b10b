"""`stores move` into and out of shared PostgreSQL databases: an own database (SQLite,
PostgreSQL, MariaDB) into its own schema of a shared database, a shared-schema store into a
database of its own (PostgreSQL, SQLite) or into another shared database; rows identical after,
the neighbour in the shared database untouched, rollbacks, and the kept schema source dropped by
the scheduler's tick without the shared database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import URL

from tenantry.db import shared_schemas
from tenantry.db.admin import database_exists, drop_database
from tenantry.db.engines import connect, make_engine
from tenantry.db.identity import read_identity
from tenantry.db.master.models import IntegrationConfig, StoreMove
from tenantry.db.tenant.store.models import Product
from tenantry.db.types import utcnow
from tenantry.db.urls import mask, parse_url
from tenantry.operations import store_delete
from tenantry.operations.kit import OperationKit
from tenantry.operations.move_source_drop import drop_due_sources
from tenantry.operations.provision_shared import provision_shared_store
from tenantry.operations.server_drain import ServerDrain
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.connections import migrator_url
from tenantry.services.move_history import list_moves, move_row
from tenantry.services.move_plan import block_reason
from tests.conftest import require_server
from tests.platform_fixtures import platform, settings
from tests.services.test_moves import (
    PRODUCTS,
    admin_url,
    cleanup,
    digests,
    fill,
    mover,
    provision,
    register,
)
from tests.shared_schema_fixtures import SharedDb, shared_db
from tests.tenantry_fixtures import new_slug

__all__ = ["cleanup", "platform", "settings", "shared_db"]


def admin_query(database: str, sql: str) -> list[tuple[object, ...]]:
    """Rows of ``sql`` run as the local PostgreSQL server's admin in ``database``."""
    engine = make_engine(parse_url(admin_url("postgresql")).set(database=database), pooled=False)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


def migrator(platform: Platform, slug: str) -> URL:
    """The admin URL of the store's active database (confined to its schema when shared)."""
    with platform.sessions() as session:
        config = stores.active_connection(session, stores.get_store(session, slug))
        assert config is not None
        return migrator_url(session, platform.box, config)


def fill_store(platform: Platform, slug: str) -> None:
    """The moves tests' rows of every kind, written as the admin into the store's database."""
    engine = make_engine(migrator(platform, slug), pooled=False)
    try:
        with connect(engine, begin=True) as conn:
            fill(conn)
    finally:
        engine.dispose()


def shared_store(platform: Platform, target: str, label: str) -> str:
    """A store provisioned into shared database ``target`` (SERVER/DB) and filled."""
    slug = new_slug(label)
    with platform.sessions.begin() as session:
        stores.create_store(session, slug=slug, name=slug.title(), actor="cli:test")
    provision_shared_store(platform, slug, target, actor="cli:test")
    fill_store(platform, slug)
    return slug


def served(platform: Platform, slug: str) -> tuple[int, str]:
    """Products the router serves for the store, after adding one (it takes writes), and the
    role its session runs as."""
    with platform.sessions() as session:
        store = stores.get_store(session, slug)
        with platform.router.session(session, store) as tenant:
            new = uuid.uuid4().hex[:6]
            tenant.add(Product(sku=f"NEW-{new}", slug=f"new-{new}", name="New"))
            tenant.commit()
            count = tenant.scalar(select(func.count()).select_from(Product))
            on_postgresql = tenant.connection().dialect.name == "postgresql"
            user = tenant.scalar(text("SELECT current_user")) if on_postgresql else "-"
    return int(count or 0), str(user)


def may_insert(database: str, role: str, schema: str) -> bool:
    """Whether ``role`` may insert into the store's products in ``schema``."""
    rows = admin_query(
        database, f"SELECT has_table_privilege('{role}', '\"{schema}\".products', 'INSERT')"
    )
    return bool(rows[0][0])


def role_exists(role: str) -> bool:
    """Whether the server has role ``role``."""
    return bool(admin_query("postgres", f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'"))


@pytest.fixture
def other_shared(platform: Platform, shared_db: SharedDb) -> Iterator[str]:
    """A second shared database name on the same server, dropped with its pool login after
    (before ``shared_db``'s teardown, which drops the stores' roles once no database holds
    their grants)."""
    database = f"tsh_{uuid.uuid4().hex[:10]}"
    yield database
    platform.router.dispose_all()
    admin = parse_url(admin_url("postgresql"))
    drop_database(admin.set(database=database))
    engine = make_engine(admin.set(database="postgres"), pooled=False)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP ROLE IF EXISTS "{shared_schemas.pool_login(database)}"'))
            conn.commit()
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- into shared


@pytest.mark.parametrize("source", ["sqlite", "postgresql", "mysql"])
def test_an_own_database_moves_into_its_schema_of_a_shared_database(
    platform: Platform, shared_db: SharedDb, cleanup: None, source: str
) -> None:
    require_server(source if source != "sqlite" else "postgresql")
    neighbour = shared_store(platform, shared_db.target, "nb")
    neighbour_before = digests(migrator(platform, neighbour), platform)
    slug = new_slug("own")
    if source != "sqlite":
        register(platform, "src", source)
    provision(platform, slug, None if source == "sqlite" else "src")
    fill_store(platform, slug)
    source_url = migrator(platform, slug)
    before = digests(source_url, platform)

    moved = mover(platform).move(slug, shared_db.server, shared_database=shared_db.database)

    assert moved.status == "completed", moved.error
    assert moved.details["verified"] is True
    schema = shared_schemas.schema_name(slug, moved.store_id)  # type: ignore[arg-type]
    role = shared_schemas.tenant_role(slug, moved.store_id)  # type: ignore[arg-type]
    assert moved.details["target"]["schema"] == schema
    assert moved.details["target"]["database"] == shared_db.database
    target = migrator(platform, slug)
    assert shared_schemas.schema_of(target) == schema
    assert digests(target, platform) == before  # rows identical, table by table
    with platform.sessions() as session:
        config = stores.active_connection(session, stores.get_store(session, slug))
        assert config is not None
        assert (config.db_schema, config.config_data["role"]) == (schema, role)
        assert config.config_data["username"] == shared_schemas.pool_login(shared_db.database)
        assert "password" not in str(config.config_data)
        old = session.get(IntegrationConfig, moved.from_config_id)
        assert old is not None
        assert old.is_active is False
    # Its own identity and version table in the schema, as shared provisioning makes them.
    tables = {
        str(r[0])
        for r in admin_query(
            shared_db.database,
            f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}'",
        )
    }
    assert "tenantry_identity" in tables
    assert any(t.startswith("tenantry_") and "version" in t for t in tables)
    engine = make_engine(target, pooled=False)
    try:
        with connect(engine) as conn:
            identity = read_identity(conn)
            assert identity is not None
            assert identity.instance_id == old.instance_id
    finally:
        engine.dispose()
    # Served through the shared pool as its role, writable; the neighbour is untouched.
    count, user = served(platform, slug)
    assert (count, user) == (PRODUCTS + 1, role)
    assert digests(migrator(platform, neighbour), platform) == neighbour_before
    # The source is kept as it was (read-only where the backend allows it).
    assert digests(source_url, platform) == before
    assert moved.details["source_read_only"]["applied"] is (source != "mysql")


# --------------------------------------------------------------------------- out of shared


@pytest.mark.parametrize("to", ["pgs", "sqlite"])
def test_a_shared_schema_store_moves_into_a_database_of_its_own(
    platform: Platform, shared_db: SharedDb, cleanup: None, to: str
) -> None:
    neighbour = shared_store(platform, shared_db.target, "nb")
    slug = shared_store(platform, shared_db.target, "sh")
    neighbour_before = digests(migrator(platform, neighbour), platform)
    source_url = migrator(platform, slug)
    before = digests(source_url, platform)
    schema = shared_schemas.schema_of(source_url)
    assert schema is not None

    # The plain --server move of a shared store: to a database of its own there (the same
    # server is allowed, it is another kind of home).
    moved = mover(platform).move(slug, to)

    assert moved.status == "completed", moved.error
    target = migrator(platform, slug)
    assert shared_schemas.schema_of(target) is None
    assert target.get_backend_name() == ("sqlite" if to == "sqlite" else "postgresql")
    assert digests(target, platform) == before
    count, _ = served(platform, slug)
    assert count == PRODUCTS + 1
    with platform.sessions() as session:
        config = stores.active_connection(session, stores.get_store(session, slug))
        assert config is not None
        assert config.db_schema is None
        assert (config.database_server_id is None) is (to == "sqlite")
    # The kept schema: same rows, its role may no longer write; the neighbour still may.
    role = shared_schemas.tenant_role(slug, moved.store_id)  # type: ignore[arg-type]
    assert digests(source_url, platform) == before
    assert not may_insert(shared_db.database, role, schema)
    assert moved.details["source_read_only"]["applied"] is True
    assert digests(migrator(platform, neighbour), platform) == neighbour_before
    assert served(platform, neighbour)[0] == PRODUCTS + 1


def test_a_shared_store_moves_to_another_shared_database_and_its_kept_schema_is_dropped(
    platform: Platform, shared_db: SharedDb, cleanup: None, other_shared: str
) -> None:
    neighbour = shared_store(platform, shared_db.target, "nb")
    slug = shared_store(platform, shared_db.target, "sh")
    source_url = migrator(platform, slug)
    schema = shared_schemas.schema_of(source_url)
    assert schema is not None
    before = digests(source_url, platform)

    moved = mover(platform).move(slug, shared_db.server, shared_database=other_shared)

    assert moved.status == "completed", moved.error
    target = migrator(platform, slug)
    assert target.database == other_shared
    assert digests(target, platform) == before
    role = shared_schemas.tenant_role(slug, moved.store_id)  # type: ignore[arg-type]
    assert served(platform, slug) == (PRODUCTS + 1, role)  # one role, server-wide
    # Into the same shared database again: refused naming the flags.
    with pytest.raises(Exception, match="--to-shared SERVER/DATABASE"):
        mover(platform).move(slug, shared_db.server, shared_database=other_shared)

    # The scheduler's tick, once the keep period is over: the schema source goes (its
    # schema alone), the shared database and the neighbour stay, the role the store still
    # uses in the other database stays.
    kit = OperationKit.from_settings(platform.sessions, platform.settings)
    assert drop_due_sources(platform.sessions, platform.box, kit) == []
    dropped = drop_due_sources(
        platform.sessions, platform.box, kit, now=utcnow() + timedelta(days=8)
    )
    assert [d.outcome for d in dropped] == ["dropped"]
    assert not shared_schemas.schema_exists(
        parse_url(admin_url("postgresql")), shared_db.database, schema
    )
    assert database_exists(parse_url(admin_url("postgresql")).set(database=shared_db.database))
    assert served(platform, neighbour)[0] == PRODUCTS + 1
    assert role_exists(role)
    assert served(platform, slug)[0] == PRODUCTS + 2
    with platform.sessions() as session:
        rows = [move_row(m) for m in list_moves(session)]
    assert [(r["source"], r["to"]) for r in rows] == [("dropped", f"pgs/{other_shared}")]


def test_the_tick_drops_a_schema_source_and_its_role_once_the_store_left_shared(
    platform: Platform, shared_db: SharedDb, cleanup: None
) -> None:
    slug = shared_store(platform, shared_db.target, "sh")
    neighbour = shared_store(platform, shared_db.target, "nb")
    moved = mover(platform).move(slug, "pgs")
    assert moved.status == "completed", moved.error
    role = shared_schemas.tenant_role(slug, moved.store_id)  # type: ignore[arg-type]
    kit = OperationKit.from_settings(platform.sessions, platform.settings)

    dropped = drop_due_sources(
        platform.sessions, platform.box, kit, now=utcnow() + timedelta(days=8)
    )

    assert [d.outcome for d in dropped] == ["dropped"]
    assert not role_exists(role)
    assert database_exists(parse_url(admin_url("postgresql")).set(database=shared_db.database))
    assert served(platform, neighbour)[0] == PRODUCTS + 1
    assert served(platform, slug)[0] == PRODUCTS + 1


# --------------------------------------------------------------------------- rollbacks


@pytest.mark.parametrize("point", ["move.after_copy", "move.source_read_only"])
def test_a_failure_into_shared_rolls_back_to_the_source(
    platform: Platform,
    shared_db: SharedDb,
    cleanup: None,
    monkeypatch: pytest.MonkeyPatch,
    point: str,
) -> None:
    neighbour = shared_store(platform, shared_db.target, "nb")
    slug = new_slug("own")
    register(platform, "src", "postgresql")
    provision(platform, slug, "src")
    fill_store(platform, slug)
    source_url = migrator(platform, slug)
    before = digests(source_url, platform)
    monkeypatch.setenv("TENANTRY_FAILPOINTS", f"{point}=raise")

    moved = mover(platform).move(slug, shared_db.server, shared_database=shared_db.database)

    assert moved.status == "rolled_back"
    assert moved.error == f"FailPointError: fail point {point} reached"
    assert moved.details["target_dropped"] is True
    schema = moved.details["target_schema"]["schema"]
    admin = parse_url(admin_url("postgresql"))
    assert not shared_schemas.schema_exists(admin, shared_db.database, schema)
    assert not role_exists(moved.details["target_schema"]["role"])
    assert database_exists(admin.set(database=shared_db.database))  # the neighbour's home
    assert migrator(platform, slug) == source_url
    assert served(platform, slug)[0] == PRODUCTS + 1  # at its source, writable
    assert digests(source_url, platform)["orders"] == before["orders"]
    assert served(platform, neighbour)[0] == PRODUCTS + 1


def test_a_failure_out_of_shared_leaves_the_schema_writable(
    platform: Platform, shared_db: SharedDb, cleanup: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    slug = shared_store(platform, shared_db.target, "sh")
    source_url = migrator(platform, slug)
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "move.source_read_only=raise")

    moved = mover(platform).move(slug, "pgs")

    assert moved.status == "rolled_back"
    assert moved.details["source_read_only"] == {"applied": False, "how": "undone"}
    assert moved.details["target_dropped"] is True
    assert not database_exists(
        parse_url(admin_url("postgresql")).set(database=moved.details["target"]["database"])
    )
    assert migrator(platform, slug) == source_url
    assert served(platform, slug)[0] == PRODUCTS + 1
    with platform.sessions() as session:
        assert session.scalar(select(func.count()).select_from(StoreMove)) == 1


# --------------------------------------------------------------------------- drains, deletes


def test_draining_a_server_keeps_a_shared_store_in_a_shared_database(
    platform: Platform, shared_db: SharedDb, cleanup: None
) -> None:
    slug = shared_store(platform, shared_db.target, "dr")
    before = digests(migrator(platform, slug), platform)
    register(platform, "pg-new", "postgresql")  # the same local server, registered again
    drain = ServerDrain(platform, "cli:test")
    started = drain.start(shared_db.server)
    assert started.operation_id is not None

    report = drain.run(started.operation_id)

    assert report.complete, report.document()
    target = migrator(platform, slug)
    schema = shared_schemas.schema_of(target)
    assert target.database == shared_db.database  # a shared database of the same name
    assert schema is not None
    assert schema.startswith(shared_schemas.schema_name(slug, _store_id(platform, slug)) + "_m")
    assert digests(target, platform) == before
    assert served(platform, slug)[0] == PRODUCTS + 1


def test_deleting_a_moved_store_drops_its_kept_schema_and_role_not_the_database(
    platform: Platform, shared_db: SharedDb, cleanup: None
) -> None:
    neighbour = shared_store(platform, shared_db.target, "nb")
    slug = shared_store(platform, shared_db.target, "del")
    kept = migrator(platform, slug)
    moved = mover(platform).move(slug, "sqlite")
    assert moved.status == "completed", moved.error
    role = shared_schemas.tenant_role(slug, _store_id(platform, slug))

    deletion = store_delete.plan(platform, slug, drop_database=True)
    report = store_delete.delete(platform, deletion, actor="cli:test")

    assert report["kept_sources_dropped"] == [mask(kept)]
    admin = parse_url(admin_url("postgresql"))
    assert not shared_schemas.schema_exists(admin, shared_db.database, str(kept_schema(kept)))
    assert not role_exists(role)
    assert database_exists(admin.set(database=shared_db.database))
    assert served(platform, neighbour)[0] == PRODUCTS + 1


def kept_schema(url: URL) -> str | None:
    """The schema a kept source's URL is confined to."""
    return shared_schemas.schema_of(url)


def _store_id(platform: Platform, slug: str) -> uuid.UUID:
    with platform.sessions() as session:
        return stores.get_store(session, slug).id


def test_a_dead_movers_schema_is_dropped_when_the_next_move_takes_over(
    platform: Platform, shared_db: SharedDb, cleanup: None
) -> None:
    neighbour = shared_store(platform, shared_db.target, "nb")
    slug = new_slug("orph")
    provision(platform, slug)
    # What a mover killed mid-copy into the shared database leaves: a running move, its
    # half-made schema and role, and a write block whose lease lapsed.
    dead = uuid.uuid4()
    schema, role = f"t_dead_{dead.hex[:8]}", f"ts_dead_{dead.hex[:8]}"
    admin = parse_url(admin_url("postgresql"))
    shared_schemas.ensure_tenant_schema(admin, shared_db.database, schema, role)
    with platform.sessions.begin() as session:
        store = stores.get_store(session, slug)
        config = stores.active_connection(session, store)
        assert config is not None
        session.add(
            StoreMove(
                id=dead,
                store_id=store.id,
                slug=slug,
                from_config_id=config.id,
                to_server=shared_db.server,
                step="copy",
                details={
                    "target": {"database": shared_db.database, "schema": schema},
                    "target_created": True,
                    "target_schema": {
                        "database": shared_db.database,
                        "schema": schema,
                        "role": role,
                    },
                },
            )
        )
        store.write_block_reason = block_reason(dead, shared_db.server)
        store.write_block_until = utcnow() - timedelta(seconds=1)

    moved = mover(platform).move(slug, shared_db.server, shared_database=shared_db.database)

    assert moved.status == "completed", moved.error
    assert not shared_schemas.schema_exists(admin, shared_db.database, schema)
    assert not role_exists(role)
    assert database_exists(admin.set(database=shared_db.database))
    with platform.sessions() as session:
        old = session.get_one(StoreMove, dead)
        assert old.status == "rolled_back"
        assert old.details["target_dropped"] is True
    assert served(platform, neighbour)[0] == PRODUCTS + 1
