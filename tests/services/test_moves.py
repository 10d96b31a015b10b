"""`stores move`: a store's database copied to another server, verified, switched, rolled back
on any failure; against real SQLite, PostgreSQL and MariaDB databases."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, func, insert, select, text, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tenantry.db import migrations, readonly
from tenantry.db.admin import create_database, database_exists, drop_database
from tenantry.db.copy import normalise, table_digest
from tenantry.db.engines import BUSY_TIMEOUT_ENV, connect, make_engine
from tenantry.db.identity import read_identity
from tenantry.db.logins import login_exists
from tenantry.db.master.models import (
    AuditLog,
    DatabaseServer,
    IntegrationConfig,
    ProvisioningMode,
    Store,
    StoreMove,
)
from tenantry.db.tenant.store.models import (
    Attribute,
    Category,
    Customer,
    Order,
    OrderItem,
    Price,
    Product,
    ProductAttributeValue,
    ProductCategory,
    Setting,
)
from tenantry.db.urls import parse_url
from tenantry.errors import Conflict, NotFound, WrongDatabase
from tenantry.operations.move_store import StoreMover
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services import provisioning, servers, stores
from tenantry.services.connections import migrator_url, tenant_url
from tenantry.services.move_plan import block_reason
from tenantry.services.move_progress import MoveProgress, move_document
from tenantry.services.write_blocks import ensure_writable
from tenantry.settings import Settings, load_settings
from tests.conftest import SERVER_URLS, drop_schema_templates, require_server
from tests.helpers import busy_writer, move_store, run_child
from tests.platform_fixtures import platform, settings
from tests.store_logins import drop_logins_of_stores

__all__ = ["platform", "settings"]

#: Registered with a password: trust authentication ignores it, and it must never show.
PG_PASSWORD = "pg-s3cret-xyzzy"
PRODUCTS = 40
BATCH = 7  # small batches, so every table of a few dozen rows takes several


def pg_admin_url() -> str:
    """The local PostgreSQL server's URL with a password in it."""
    url = parse_url(SERVER_URLS["postgresql"]).set(password=PG_PASSWORD)
    return url.render_as_string(hide_password=False)


def admin_url(backend: str) -> str:
    """The URL a test registers a server with."""
    return pg_admin_url() if backend == "postgresql" else SERVER_URLS[backend]


def register(platform: Platform, name: str, backend: str) -> None:
    """Register the local ``backend`` server as ``name``."""
    with platform.sessions.begin() as session:
        servers.add_server(
            session, platform.box, name=name, admin_url=admin_url(backend), actor="cli:test"
        )


def provision(platform: Platform, slug: str, server: str | None = None) -> None:
    """A store with a database on ``server`` (or a SQLite file)."""
    with platform.sessions.begin() as session:
        store = stores.create_store(session, slug=slug, name=slug.title(), actor="cli:test")
        on = servers.get_server(session, server) if server else None
        job = provisioning.request_provisioning(
            session,
            platform.box,
            platform.settings,
            store,
            mode=ProvisioningMode.CREATE_NEW,
            server=on,
            actor="cli:test",
        )
    outcome = Provisioner(
        platform.sessions, platform.box, platform.settings, platform.tenant_spec, "t"
    ).run(job.id)
    assert outcome == "completed"


def store_url(platform: Platform, slug: str) -> URL:
    """The URL of the store's active database."""
    with platform.sessions() as session:
        config = stores.active_connection(session, stores.get_store(session, slug))
        assert config is not None
        return tenant_url(platform.box, config)


def fill(conn: Connection) -> None:
    """Data exercising every kind of value: UUIDs, aware times with microseconds, JSON of all
    shapes, booleans, NULLs, unicode, and a category listed before its parent."""
    now = datetime(2024, 5, 17, 13, 45, 12, 123456, tzinfo=timezone(timedelta(hours=2)))
    products = [
        {
            "id": uuid.uuid4(),
            "sku": f"SKU-{n:03}",
            "slug": f"product-{n}",
            "name": f"Café ☕ {n} 𝄞",
            "description": None if n % 3 else f"line one\nline 'two' {n}",
            "is_active": n % 2 == 0,
            "weight_grams": None if n % 4 else n * 10,
            "metadata_": {"tags": ["a", "b"], "n": n, "nested": {"z": 1, "a": [1.5, None]}},
            "created_at": now + timedelta(seconds=n),
            "updated_at": now,
        }
        for n in range(PRODUCTS)
    ]
    conn.execute(insert(Product), products)
    # The child first, its parent afterwards: the source returns them in that order.
    child, parent = uuid.uuid4(), uuid.uuid4()
    conn.execute(insert(Category), [{"id": child, "slug": "mugs", "name": "Mugs"}])
    conn.execute(insert(Category), [{"id": parent, "slug": "kitchen", "name": "Kitchen"}])
    conn.execute(update(Category).where(Category.id == child).values(parent_id=parent))
    conn.execute(
        insert(ProductCategory),
        [
            {"product_id": p["id"], "category_id": child, "position": i}
            for i, p in enumerate(products)
        ],
    )
    attribute = uuid.uuid4()
    conn.execute(
        insert(Attribute),
        [{"id": attribute, "code": "colour", "name": "Colour", "options": ["red", "blue"]}],
    )
    conn.execute(
        insert(ProductAttributeValue),
        [
            {"product_id": products[0]["id"], "attribute_id": attribute, "value": "red"},
            {"product_id": products[1]["id"], "attribute_id": attribute, "value": ["red", 2]},
            {"product_id": products[2]["id"], "attribute_id": attribute, "value": True},
        ],
    )
    conn.execute(
        insert(Price),
        [
            {
                "product_id": p["id"],
                "amount_minor": 1250 + i,
                "compare_at_minor": None if i % 2 else 9_000_000_000,
                "starts_at": now - timedelta(days=i),
            }
            for i, p in enumerate(products)
        ],
    )
    customer = uuid.uuid4()
    conn.execute(insert(Customer), [{"id": customer, "email": "ann@example.com"}])
    order = uuid.uuid4()
    conn.execute(
        insert(Order),
        [
            {
                "id": order,
                "order_number": "1001",
                "customer_id": customer,
                "email": "ann@example.com",
                "total_minor": 2500,
                "shipping_address": {"city": "Zürich", "zip": "8001"},
                "billing_address": {},
                "placed_at": now,
            }
        ],
    )
    conn.execute(
        insert(OrderItem),
        [
            {
                "order_id": order,
                "product_id": products[0]["id"],
                "sku": "SKU-000",
                "name": "Mug",
                "quantity": 2,
                "unit_price_minor": 1250,
                "total_minor": 2500,
            }
        ],
    )
    conn.execute(insert(Setting), [{"key": "store.banner", "value": {"on": False, "n": 0}}])


def filled(platform: Platform, slug: str) -> None:
    """Write :func:`fill`'s data into the store's database."""
    engine = make_engine(store_url(platform, slug), pooled=False)
    try:
        with connect(engine, begin=True) as conn:
            fill(conn)
    finally:
        engine.dispose()


def digests(url: URL, platform: Platform) -> dict[str, tuple[int, str]]:
    """Rows and checksum of every table of the tenant schema at ``url``."""
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            found = {}
            for table in platform.tenant_spec.metadata.sorted_tables:
                digest = table_digest(conn, table)
                found[table.name] = (digest.rows, digest.sha256)
            return found
    finally:
        engine.dispose()


def mover(platform: Platform, **kwargs: Any) -> StoreMover:
    """A mover with small batches."""
    kwargs.setdefault("batch_rows", BATCH)
    kwargs.setdefault("actor", "cli:test")
    return StoreMover(
        platform.sessions, platform.box, platform.settings, platform.tenant_spec, **kwargs
    )


def master_text(platform: Platform) -> str:
    """Every master table's rows as text (to look for secrets)."""
    with platform.sessions() as session:
        rows = [
            str(tuple(row))
            for name in ("store_moves", "audit_logs", "integration_configs", "stores")
            for row in session.execute(text(f"SELECT * FROM {name}"))
        ]
    return "\n".join(rows)


@pytest.fixture
def cleanup(platform: Platform) -> Iterator[None]:
    """Drop every server database the test's stores used or a move made, after the test."""
    yield
    drop_server_databases(platform)


def drop_server_databases(platform: Platform) -> None:
    """Drop the server databases of every store connection and move master knows."""
    urls: list[URL] = []
    with platform.sessions() as session:
        for config in session.scalars(select(IntegrationConfig)):
            # Shared-schema stores' databases are dropped by their own fixture (shared_db).
            if config.config_data.get("engine") != "sqlite" and not config.db_schema:
                urls.append(migrator_url(session, platform.box, config))
        for move in session.scalars(select(StoreMove)):
            target = move.details.get("target") or {}
            server = session.scalar(
                select(DatabaseServer).where(DatabaseServer.name == move.to_server)
            )
            if server is not None and target.get("database"):
                admin = parse_url(platform.box.open(server.admin_url_encrypted))
                urls.append(admin.set(database=target["database"]))
    for url in urls:
        drop_database(url)
    drop_logins_of_stores(platform)


# --------------------------------------------------------------------------- normalising


def test_values_normalise_the_same_whatever_engine_returned_them() -> None:
    aware = datetime(2024, 1, 2, 5, 4, 5, 6, tzinfo=timezone(timedelta(hours=2)))
    assert (
        normalise(aware)
        == normalise(datetime(2024, 1, 2, 3, 4, 5, 6))
        == ("2024-01-02T03:04:05.000006+00:00")
    )
    assert normalise(Decimal("1.50")) == normalise(Decimal("15E-1")) == "1.5"
    assert normalise(Decimal("-0.00")) == normalise(Decimal("0")) == "0"
    assert normalise(Decimal("1E+2")) == "100"
    assert normalise(True) == normalise(1) == 1
    some = uuid.uuid4()
    assert normalise(some) == str(some)
    assert normalise({"b": 1, "a": [1, None]}, json_column=True) == '{"a":[1,null],"b":1}'
    assert normalise(None, json_column=True) is None
    assert normalise(None) is None
    assert normalise(date(2024, 1, 2)) == "2024-01-02"
    assert normalise(b"\x00\xff") == "00ff"


# --------------------------------------------------------------------------- moves


@pytest.mark.parametrize("target", ["postgresql", "mysql"])
def test_move_from_sqlite_to_a_server(platform: Platform, cleanup: None, target: str) -> None:
    require_server(target)
    provision(platform, "grower")
    register(platform, "big", target)
    filled(platform, "grower")
    source = store_url(platform, "grower")
    before = digests(source, platform)
    with platform.sessions() as session:
        old = session.scalars(select(IntegrationConfig)).one()
        version = stores.get_store(session, "grower").connection_version
    seen: list[MoveProgress] = []

    moved = mover(platform, on_progress=seen.append).move("grower", "big")

    assert moved.status == "completed", moved.error
    assert (moved.step, moved.progress, moved.error) == ("done", 100, None)
    details = moved.details
    assert details["verified"] is True
    assert details["total_rows"] == sum(t["rows"] for t in details["tables"].values())
    for name, table in details["tables"].items():
        assert table["rows"] == table["copied"] == table["verified"], name
    assert details["tables"]["products"]["rows"] == PRODUCTS
    assert details["tables"]["tenantry_identity"]["rows"] == 1
    assert details["source_read_only"]["applied"] is True
    assert details["target"]["server"] == "big"
    assert moved.keep_source_until is not None
    assert abs(moved.keep_source_until - (utc_now() + timedelta(days=7))) < timedelta(minutes=1)
    # Progress went forward through the steps to the end, counting every row.
    steps = [p.step for p in seen]
    assert steps.index("copy") < steps.index("verify") < steps.index("switch") < len(steps)
    assert seen[-1].step == "done"
    assert seen[-1].rows_copied == seen[-1].rows_verified == seen[-1].total_rows
    assert [p.progress for p in seen] == sorted(p.progress for p in seen)

    with platform.sessions() as session:
        store = stores.get_store(session, "grower")
        assert store.connection_version == version + 1
        assert (store.write_block_reason, store.write_block_until) == (None, None)
        assert store.database_type == target
        configs = {c.id: c for c in session.scalars(select(IntegrationConfig))}
        new = stores.active_connection(session, store)
        assert new is not None
        assert new.id == moved.to_config_id
        assert configs[old.id].is_active is False
        assert new.instance_id == old.instance_id
        assert new.created_by_tenantry is True
        assert "password" not in new.config_data
        actions = session.scalars(select(AuditLog.action)).all()
        assert "store.move" in actions
        target_url = tenant_url(platform.box, new)

    # The new database holds the same data, the same identity, the head revision, no drift.
    assert digests(target_url, platform) == before
    engine = make_engine(target_url, pooled=False)
    try:
        with connect(engine) as conn:
            identity = read_identity(conn)
            assert identity is not None
            assert identity.instance_id == old.instance_id
            spec = platform.tenant_spec
            assert migrations.current(conn, spec) == migrations.head(spec)
            assert migrations.drift(conn, spec) == []
            kitchen = conn.scalar(select(Category.id).where(Category.slug == "kitchen"))
            assert conn.scalar(select(Category.parent_id).where(Category.slug == "mugs")) == kitchen
    finally:
        engine.dispose()
    # The router serves the store from the new database, and it takes writes.
    with platform.sessions() as session:
        store = stores.get_store(session, "grower")
        with platform.router.session(session, store) as tenant:
            assert tenant.scalar(select(func.count()).select_from(Product)) == PRODUCTS
            tenant.add(Product(sku="NEW-1", slug="new-1", name="New"))
            tenant.commit()
    assert digests(target_url, platform)["products"][0] == PRODUCTS + 1
    # The source is untouched and read-only (file mode; root would still be let in).
    assert digests(source, platform) == before
    path = Path(str(source.database))
    assert stat.S_IMODE(path.stat().st_mode) == 0o400


def utc_now() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def test_move_between_two_registrations_of_one_postgresql_server(
    platform: Platform, cleanup: None
) -> None:
    require_server("postgresql")
    register(platform, "pg-a", "postgresql")
    register(platform, "pg-b", "postgresql")
    provision(platform, "pg-shop", server="pg-a")
    filled(platform, "pg-shop")
    source = store_url(platform, "pg-shop")
    before = digests(source, platform)

    moved = mover(platform).move("pg-shop", "pg-b")

    assert moved.status == "completed", moved.error
    target = store_url(platform, "pg-shop")
    # Same server: the store's usual name is taken by the source, the move picks another.
    assert target.database != source.database
    assert str(target.database).endswith(f"_m{moved.id.hex[:8]}")
    assert digests(target, platform) == before
    read_only = moved.details["source_read_only"]
    assert read_only["applied"] is True
    assert "default_transaction_read_only" in read_only["how"]
    engine = make_engine(source, pooled=False)
    try:
        with connect(engine) as conn, pytest.raises(DBAPIError, match="read-only"):
            conn.execute(text("DELETE FROM products"))
    finally:
        engine.dispose()
    # The admin password is in no row of master (other than sealed), and in no detail.
    assert PG_PASSWORD not in master_text(platform)
    assert PG_PASSWORD not in str(move_document(moved))


def test_move_from_mariadb_to_postgresql_says_the_source_stays_writable(
    platform: Platform, cleanup: None
) -> None:
    require_server("mysql")
    require_server("postgresql")
    register(platform, "maria", "mysql")
    register(platform, "pg", "postgresql")
    provision(platform, "from-maria", server="maria")
    filled(platform, "from-maria")
    source = store_url(platform, "from-maria")
    before = digests(source, platform)

    moved = mover(platform).move("from-maria", "pg")

    assert moved.status == "completed", moved.error
    assert digests(store_url(platform, "from-maria"), platform) == before
    read_only = moved.details["source_read_only"]
    assert read_only["applied"] is False
    assert "MySQL/MariaDB have no per-database read-only switch" in read_only["how"]
    assert moved.details["source"]["server"] == "maria"


@pytest.mark.parametrize(
    "point",
    [
        "move.copy.orders",
        "move.after_copy",
        "move.before_switch",
        "move.create_database",
        "move.source_read_only",  # after the source was made read-only: made writable again
    ],
)
def test_a_failure_rolls_the_move_back(
    platform: Platform, cleanup: None, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    require_server("postgresql")
    provision(platform, "fragile")
    register(platform, "pg", "postgresql")
    filled(platform, "fragile")
    source = store_url(platform, "fragile")
    before = digests(source, platform)
    with platform.sessions() as session:
        store = stores.get_store(session, "fragile")
        config, version = stores.active_connection(session, store), store.connection_version
    monkeypatch.setenv("TENANTRY_FAILPOINTS", f"{point}=raise")

    moved = mover(platform).move("fragile", "pg")

    assert moved.status == "rolled_back"
    assert moved.error == f"FailPointError: fail point {point} reached"
    assert moved.step == "rolled_back"
    assert moved.finished_at is not None
    assert moved.to_config_id is None
    # Claimed before creating it; dropped unless the failure came before it was made.
    assert moved.details["target_created"] is True
    assert moved.details["target_dropped"] is (point != "move.create_database")
    target = parse_url(SERVER_URLS["postgresql"]).set(database=moved.details["target"]["database"])
    assert not database_exists(target)
    if point == "move.source_read_only":  # its runtime login was made: it went with the target
        assert moved.details["target_login_dropped"] is True
        assert not login_exists(target, moved.details["target_login"])
    with platform.sessions() as session:
        store = stores.get_store(session, "fragile")
        assert store.connection_version == version
        assert store.write_block_reason is None
        assert store.database_type == "sqlite"
        now_active = stores.active_connection(session, store)
        assert config is not None
        assert now_active is not None
        assert now_active.id == config.id
        assert session.scalar(select(func.count()).select_from(IntegrationConfig)) == 1
        entry = session.scalars(
            select(AuditLog).where(AuditLog.action == "store.move.rolled_back")
        ).one()
        assert entry.details["error"] == moved.error
        # Still served from the source, and writable.
        with platform.router.session(session, store) as tenant:
            tenant.add(Product(sku="AFTER-1", slug="after-1", name="After"))
            tenant.commit()
    assert digests(source, platform)["products"][0] == PRODUCTS + 1
    assert stat.S_IMODE(Path(str(source.database)).stat().st_mode) != 0o400
    assert before["orders"] == digests(source, platform)["orders"]


def test_a_copy_that_differs_from_the_source_is_rolled_back(
    platform: Platform, cleanup: None
) -> None:
    require_server("postgresql")
    provision(platform, "tampered")
    register(platform, "pg", "postgresql")
    filled(platform, "tampered")

    def tamper(state: MoveProgress) -> None:
        if state.step != "verify" or state.rows_verified:
            return
        with platform.sessions() as session:
            running = session.scalars(select(StoreMove)).one()
            name = running.details["target"]["database"]
        engine = make_engine(parse_url(SERVER_URLS["postgresql"]).set(database=name))
        try:
            with connect(engine, begin=True) as conn:
                conn.execute(update(Product).where(Product.sku == "SKU-007").values(name="x"))
        finally:
            engine.dispose()

    moved = mover(platform, on_progress=tamper).move("tampered", "pg")

    assert moved.status == "rolled_back"
    assert moved.error is not None
    assert "does not match the source (products: same 40 rows, different content)" in moved.error
    assert moved.details["verified"] is False
    assert moved.details["target_dropped"] is True
    with platform.sessions() as session:
        assert stores.get_store(session, "tampered").database_type == "sqlite"


def test_a_move_abandoned_by_a_dead_mover_is_taken_over(platform: Platform, cleanup: None) -> None:
    require_server("postgresql")
    provision(platform, "orphan")
    register(platform, "pg", "postgresql")
    # What a mover killed mid-copy leaves: a running move, its half-made database, and a
    # write block whose lease lapsed.
    dead = uuid.uuid4()
    leftover = parse_url(SERVER_URLS["postgresql"]).set(database=f"t_orphan_dead_{dead.hex[:8]}")
    create_database(leftover)
    with platform.sessions.begin() as session:
        store = stores.get_store(session, "orphan")
        config = stores.active_connection(session, store)
        assert config is not None
        session.add(
            StoreMove(
                id=dead,
                store_id=store.id,
                slug="orphan",
                from_config_id=config.id,
                to_server="pg",
                step="copy",
                details={"target": {"database": leftover.database}, "target_created": True},
            )
        )
        store.write_block_reason = block_reason(dead, "pg")
        store.write_block_until = utc_now() - timedelta(seconds=1)

    moved = mover(platform).move("orphan", "pg")

    assert moved.status == "completed", moved.error
    assert not database_exists(leftover)
    with platform.sessions() as session:
        old = session.get_one(StoreMove, dead)
        assert old.status == "rolled_back"
        assert old.error is not None
        assert "abandoned" in old.error
        assert old.details["target_dropped"] is True


def test_a_mover_killed_mid_move_blocks_writes_only_until_its_lease_lapses(
    platform: Platform, cleanup: None
) -> None:
    require_server("postgresql")
    provision(platform, "killed")
    register(platform, "pg", "postgresql")
    filled(platform, "killed")
    env = {
        **os.environ,
        "TENANTRY_DATA_DIR": str(platform.settings.data_dir),
        "TENANTRY_FAILPOINTS": "move.after_copy=kill",
        "TENANTRY_JOB_LEASE_SECONDS": "1",
    }
    assert run_child(move_store, "killed", "pg", env=env) == -signal.SIGKILL
    with platform.sessions() as session:
        store = stores.get_store(session, "killed")
        dead = session.scalars(select(StoreMove)).one()
        assert dead.status == "running"
        assert store.write_block_reason == block_reason(dead.id, "pg")
        half_made = parse_url(SERVER_URLS["postgresql"]).set(
            database=dead.details["target"]["database"]
        )
    assert database_exists(half_made)

    time.sleep(1.2)  # the dead mover's lease lapses: the store takes writes again
    with platform.sessions() as session:
        ensure_writable(stores.get_store(session, "killed"))
    moved = mover(platform).move("killed", "pg")

    assert moved.status == "completed", moved.error
    with platform.sessions() as session:
        assert session.get_one(StoreMove, dead.id).status == "rolled_back"
    assert not database_exists(half_made)


# --------------------------------------------------------------------------- refusals


def _nothing_changed(platform: Platform, slug: str, version: int) -> None:
    with platform.sessions() as session:
        store = stores.get_store(session, slug)
        assert store.connection_version == version
        assert session.scalar(select(func.count()).select_from(StoreMove)) == 0
        assert store.write_block_reason is None


def test_refusals_change_nothing(platform: Platform, cleanup: None) -> None:
    require_server("postgresql")
    register(platform, "pg", "postgresql")
    register(platform, "pg-off", "postgresql")
    provision(platform, "on-pg", server="pg")
    provision(platform, "local")
    with platform.sessions.begin() as session:
        session.scalars(select(DatabaseServer).where(DatabaseServer.name == "pg-off")).one()
        off = servers.get_server(session, "pg-off")
        off.is_active = False
        version = stores.get_store(session, "on-pg").connection_version
        local_version = stores.get_store(session, "local").connection_version
    move = mover(platform)

    with pytest.raises(Conflict, match="already lives on server 'pg'"):
        move.move("on-pg", "pg")
    with pytest.raises(Conflict, match="server 'pg-off' is inactive"):
        move.move("local", "pg-off")
    with pytest.raises(NotFound, match="no database server 'nope'"):
        move.move("local", "nope")
    with pytest.raises(NotFound, match="no store 'ghost'"):
        move.move("ghost", "pg")

    with platform.sessions.begin() as session:
        stores.suspend_store(session, stores.get_store(session, "local"), actor="cli:test")
    with pytest.raises(Conflict, match="is suspended; only an active store can be moved"):
        move.move("local", "pg")
    with platform.sessions.begin() as session:
        store = stores.get_store(session, "local")
        stores.resume_store(session, store, actor="cli:test")
        local_version = store.connection_version
        # Another operation (a restore) blocks the store's writes.
        store.write_block_reason = "restoring a backup"
        store.write_block_until = utc_now() + timedelta(minutes=5)
    with pytest.raises(Conflict, match=r"writes to store 'local' are blocked \(restoring"):
        move.move("local", "pg")
    with platform.sessions.begin() as session:
        store = stores.get_store(session, "local")
        store.write_block_reason = store.write_block_until = None

    # A source behind the schema's head.
    engine = make_engine(store_url(platform, "local"), pooled=False)
    try:
        with connect(engine, begin=True) as conn:
            conn.execute(text(f"DELETE FROM {platform.tenant_spec.version_table}"))
    finally:
        engine.dispose()
    with pytest.raises(Conflict, match="at revision base") as refused:
        move.move("local", "pg")
    assert "tenantry fleet migrate" in str(refused.value)

    _nothing_changed(platform, "on-pg", version)
    _nothing_changed(platform, "local", local_version)


def test_a_second_move_of_the_same_store_is_refused_while_one_runs(
    platform: Platform, cleanup: None
) -> None:
    require_server("postgresql")
    provision(platform, "busy")
    register(platform, "pg", "postgresql")
    register(platform, "pg-2", "postgresql")
    refusals: list[str] = []

    def second(state: MoveProgress) -> None:
        if state.step == "copy" and not refusals:
            with pytest.raises(Conflict) as refused:
                mover(platform).move("busy", "pg-2")
            refusals.append(str(refused.value))

    moved = mover(platform, on_progress=second).move("busy", "pg")

    assert moved.status == "completed", moved.error
    assert len(refusals) == 1
    assert "already being moved to server 'pg'" in refusals[0]


def test_a_source_that_is_not_the_stores_own_database_is_refused(
    platform: Platform, cleanup: None
) -> None:
    require_server("postgresql")
    provision(platform, "lost")
    register(platform, "pg", "postgresql")
    with platform.sessions.begin() as session:
        config = stores.active_connection(session, stores.get_store(session, "lost"))
        assert config is not None
        config.instance_id = str(uuid.uuid4())
    with pytest.raises(WrongDatabase, match="not to its own database"):
        mover(platform).move("lost", "pg")
    with platform.sessions() as session:
        assert session.scalar(select(func.count()).select_from(StoreMove)) == 0
        assert session.scalar(select(Store.write_block_reason)) is None


@pytest.fixture
def shop_platform(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    """The installation with the test plug-in as tenant schema (integer ids the database
    generates)."""
    monkeypatch.setenv("TENANTRY_TENANT_SCHEMA", "tests.fixtures.shop_plugin")
    opened = Platform.open(load_settings())
    yield opened
    drop_server_databases(opened)
    drop_schema_templates(opened.tenant_spec.name)  # the move to PostgreSQL built one
    opened.close()


@pytest.mark.parametrize("target", ["postgresql", "mysql"])
def test_generated_ids_continue_after_the_copied_ones(shop_platform: Platform, target: str) -> None:
    require_server(target)
    provision(shop_platform, "gauges")
    register(shop_platform, "big", target)
    gauges = shop_platform.tenant_spec.metadata.tables["gauges"]
    engine = make_engine(store_url(shop_platform, "gauges"), pooled=False)
    try:
        with connect(engine, begin=True) as conn:
            conn.execute(insert(gauges), [{"id": n * 10, "label": f"g{n}"} for n in range(1, 6)])
    finally:
        engine.dispose()

    moved = mover(shop_platform).move("gauges", "big")

    assert moved.status == "completed", moved.error
    engine = make_engine(store_url(shop_platform, "gauges"), pooled=False)
    try:
        with connect(engine, begin=True) as conn:
            conn.execute(insert(gauges).values(label="new"))
            assert conn.scalar(select(gauges.c.id).where(gauges.c.label == "new")) == 51
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- contention


@pytest.mark.parametrize("held_open", [False, True])
def test_a_sqlite_source_another_process_keeps_writing_is_still_made_read_only(
    platform: Platform, cleanup: None, monkeypatch: pytest.MonkeyPatch, held_open: bool
) -> None:
    require_server("postgresql")
    # The move waits up to the busy timeout for the file to leave WAL mode: 3 s show it
    # gives up on a file held open (not the default 10), and leave a loaded machine time to
    # find the gap between the writer's transactions when the file is not held open.
    monkeypatch.setenv(BUSY_TIMEOUT_ENV, "3000")
    provision(platform, "busy")
    register(platform, "pg", "postgresql")
    filled(platform, "busy")
    source = store_url(platform, "busy")
    # What a running `tenantry up` does to the file: a connection that stays open and keeps
    # taking the write lock (rolled back each time: a write committed after the move's fence
    # would fail the move, see test_move_write_fence).
    # ``held_open``: and a pooled connection that never closes (the API's), with which
    # SQLite cannot leave WAL mode however long the move waits.
    touch = text("UPDATE tenantry_identity SET role = role")
    pooled = sqlite3.connect(str(source.database))
    pooled.execute("SELECT COUNT(*) FROM products").fetchall()
    if not held_open:
        pooled.close()

    with busy_writer(source, touch, commit=False) as writes:
        moved = mover(platform).move("busy", "pg")
        assert writes() > 0
    pooled.close()

    assert moved.status == "completed", moved.error
    read_only = moved.details["source_read_only"]
    assert read_only["applied"] is True, read_only
    assert ("another process still has it open" in read_only["how"]) is held_open
    assert stat.S_IMODE(Path(str(source.database)).stat().st_mode) == 0o400
    with platform.sessions() as session:
        store = stores.get_store(session, "busy")
        # Rows written straight into the database: master's counters learn them from the move.
        assert (store.product_count, store.order_count) == (PRODUCTS, 1)
        assert store.database_type == "postgresql"


def test_a_postgresql_source_made_read_only_is_writable_again_after_a_rollback(
    platform: Platform, cleanup: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_server("postgresql")
    require_server("mysql")
    register(platform, "pg", "postgresql")
    register(platform, "maria", "mysql")
    provision(platform, "undo", server="pg")
    filled(platform, "undo")
    source = store_url(platform, "undo")
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "move.source_read_only=raise")

    moved = mover(platform).move("undo", "maria")

    assert moved.status == "rolled_back"
    assert moved.details["source_read_only"] == {"applied": False, "how": "undone"}
    assert moved.details["target_dropped"] is True
    engine = make_engine(source, pooled=False)
    try:
        with connect(engine, begin=True) as conn:
            assert conn.scalar(text("SHOW default_transaction_read_only")) == "off"
            conn.execute(insert(Setting).values(key="after.rollback", value={"ok": True}))
    finally:
        engine.dispose()
    with platform.sessions() as session:
        store = stores.get_store(session, "undo")
        assert store.database_type == "postgresql"
        assert store.write_block_reason is None


def test_a_source_a_dead_mover_made_read_only_is_writable_again_when_taken_over(
    platform: Platform, cleanup: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_server("postgresql")
    provision(platform, "stranded")
    register(platform, "pg", "postgresql")
    source = store_url(platform, "stranded")
    path = Path(str(source.database))
    # A mover killed between making the source read-only and the switch.
    dead = uuid.uuid4()
    before = readonly.writable_state(source)
    readonly.make_read_only(source)
    with platform.sessions.begin() as session:
        store = stores.get_store(session, "stranded")
        config = stores.active_connection(session, store)
        assert config is not None
        session.add(
            StoreMove(
                id=dead,
                store_id=store.id,
                slug="stranded",
                from_config_id=config.id,
                to_server="pg",
                step="source_read_only",
                details={"source_before": before, "target_created": False},
            )
        )
        store.write_block_reason = block_reason(dead, "pg")
        store.write_block_until = utc_now() - timedelta(seconds=1)
    # The next move takes over, then fails before it makes the source read-only itself.
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "move.after_copy=raise")

    moved = mover(platform).move("stranded", "pg")

    assert moved.status == "rolled_back"
    assert stat.S_IMODE(path.stat().st_mode) == before["mode"]
    with platform.sessions() as session:
        assert session.get_one(StoreMove, dead).status == "rolled_back"
