"""A store's daily usage rows: counted from its own database and master's API log, storage
measured by the server, written idempotently; the plan's storage limit enforced.

Store databases on SQLite files and, created by tenantry, on PostgreSQL and MariaDB (through
runtime logins; measured with the server's admin login)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, update

from tenantry.db.engines import connect, make_engine
from tenantry.db.master.models import Store, Subscription, UsageMetric
from tenantry.db.sizes import database_bytes
from tenantry.db.tenant.store.models import Product
from tenantry.errors import InvalidInput, LimitExceeded
from tenantry.operations import usage_rollup
from tenantry.runtime import Platform
from tenantry.services import store_data, stores, usage
from tenantry.services.connections import migrator_url
from tenantry.services.store_data import OrderLine, ProductInput
from tests.conftest import require_server
from tests.platform_fixtures import backend_platform, platform, settings
from tests.services.test_moves import drop_server_databases, provision, register

__all__ = ["backend_platform", "platform", "settings"]


@pytest.fixture(params=("sqlite", "postgresql", "mysql"))
def tenant_backend(request: pytest.FixtureRequest, platform: Platform) -> Iterator[str]:
    """Where the test's store databases go: SQLite files in the data dir, or databases
    tenantry creates on the local PostgreSQL or MariaDB server (registered as ``db1``);
    those and the stores' logins are dropped after the test."""
    if request.param == "sqlite":
        yield "sqlite"
        return
    require_server(request.param)
    register(platform, "db1", request.param)
    yield str(request.param)
    drop_server_databases(platform)


def provisioned(platform: Platform, slug: str, backend: str) -> uuid.UUID:
    """A store with its database on ``backend``; its id."""
    provision(platform, slug, server=None if backend == "sqlite" else "db1")
    with platform.sessions() as session:
        return stores.get_store(session, slug).id


def measured_bytes(platform: Platform, slug: str) -> int:
    """The store database's size, asked of the server here (what the report would say)."""
    with platform.sessions() as session:
        config = stores.active_connection(session, stores.get_store(session, slug))
        assert config is not None
        url = migrator_url(session, platform.box, config)
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            return database_bytes(conn)
    finally:
        engine.dispose()


def row_of(
    platform: Platform, store_id: uuid.UUID, day: date
) -> tuple[uuid.UUID, dict[str, object]]:
    """The stored usage row of ``day``: its id and its numbers."""
    with platform.sessions() as session:
        row = session.scalar(
            select(UsageMetric).where(
                UsageMetric.store_id == store_id, UsageMetric.metric_date == day
            )
        )
        assert row is not None, f"no usage row for {day}"
        return row.id, usage.UsageDay.of(row).document()


def rows_of(platform: Platform, store_id: uuid.UUID) -> int:
    with platform.sessions() as session:
        return len(
            session.scalars(select(UsageMetric.id).where(UsageMetric.store_id == store_id)).all()
        )


def log_call(platform: Platform, store_id: uuid.UUID, method: str, path: str, code: int) -> None:
    with platform.sessions.begin() as master:
        store_data.count_api_call(
            master,
            store_id,
            endpoint=path,
            method=method,
            status_code=code,
            response_time_ms=3,
            ip_address="127.0.0.1",
            user_agent="test",
        )


def test_a_day_is_counted_from_the_store_database_and_the_api_log_and_written_once(
    platform: Platform, tenant_backend: str
) -> None:
    store_id = provisioned(platform, "usage-shop", tenant_backend)
    today = datetime.now(UTC).date()
    yesterday_noon = datetime.combine(today, time(12), tzinfo=UTC) - timedelta(days=1)
    with platform.sessions() as master:
        store = stores.get_store(master, store_id)
        with platform.router.session(master, store) as tenant:
            a = store_data.create_product(
                tenant, master, store, ProductInput("A", "Apple", price_minor=1500)
            )
            b = store_data.create_product(
                tenant, master, store, ProductInput("B", "Banana", price_minor=250)
            )
            gone = store_data.create_product(tenant, master, store, ProductInput("C", "Cherry"))
            old = store_data.create_product(tenant, master, store, ProductInput("D", "Date"))
            tenant.flush()
            # D was added yesterday and is changed today: an update, not a creation.
            tenant.execute(
                update(Product)
                .where(Product.id == old.id)
                .values(created_at=yesterday_noon, updated_at=yesterday_noon)
            )
            tenant.commit()
            master.commit()
            store_data.update_product(
                tenant, store_data.get_product(tenant, old.id), {"name": "Dates"}
            )
            store_data.create_order(
                tenant, master, store, email="x@example.com", lines=[OrderLine(a.id, 2)]
            )
            store_data.create_order(
                tenant, master, store, email="y@example.com", lines=[OrderLine(b.id, 1)]
            )
            store_data.delete_product(tenant, master, store, gone)
            tenant.commit()
            master.commit()
    log_call(platform, store_id, "GET", "/stores/usage-shop/products", 200)
    log_call(platform, store_id, "GET", f"/stores/usage-shop/products/{uuid.uuid4()}", 404)
    log_call(platform, store_id, "POST", "/stores/usage-shop/orders", 500)
    log_call(platform, store_id, "DELETE", f"/stores/usage-shop/products/{gone.id}", 204)

    first = usage_rollup.rollup_store(platform, store_id)

    assert first.days == (today,)  # the store is new: no yesterday to write
    row_id, day = row_of(platform, store_id, today)
    size = measured_bytes(platform, "usage-shop")
    assert size > 0
    assert day == {
        "date": today.isoformat(),
        "total_products": 3,  # A, B and D; C was deleted
        "products_created": 2,
        "products_updated": 1,
        "products_deleted": 1,
        "orders_created": 2,
        "orders_total_value_minor": 2 * 1500 + 250,
        "storage_total_bytes": size,
        "storage_uploaded_bytes": 0,
        "storage_deleted_bytes": 0,
        "api_calls": 4,
        "api_errors": 2,
    }
    with platform.sessions() as session:
        store = stores.get_store(session, store_id)
        assert store.storage_used_bytes == size
        assert store.storage_measured_at is not None

    again = usage_rollup.rollup_store(platform, store_id)

    assert again.storage_bytes == size
    assert row_of(platform, store_id, today) == (row_id, day)
    assert rows_of(platform, store_id) == 1


def test_the_first_pass_after_midnight_writes_yesterday_with_its_own_numbers(
    platform: Platform, tenant_backend: str
) -> None:
    store_id = provisioned(platform, "night-shop", tenant_backend)
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date(), time.min, tzinfo=UTC)
    yesterday = now.date() - timedelta(days=1)
    with platform.sessions() as master:
        store = stores.get_store(master, store_id)
        with platform.router.session(master, store) as tenant:
            old = store_data.create_product(tenant, master, store, ProductInput("OLD", "Old"))
            tenant.flush()
            tenant.execute(
                update(Product)
                .where(Product.id == old.id)
                .values(created_at=midnight - timedelta(hours=3))
            )
            store_data.create_product(tenant, master, store, ProductInput("NEW", "New"))
            tenant.commit()
            master.commit()
    with platform.sessions.begin() as master:
        # The store exists since the day before yesterday, last measured before midnight.
        master.execute(
            update(Store)
            .where(Store.id == store_id)
            .values(
                created_at=midnight - timedelta(days=2),
                storage_measured_at=midnight - timedelta(minutes=30),
            )
        )

    first = usage_rollup.rollup_store(platform, store_id, now=now)

    assert first.days == (yesterday, now.date())
    _, ended = row_of(platform, store_id, yesterday)
    assert (ended["products_created"], ended["total_products"]) == (1, 1)
    _, current = row_of(platform, store_id, now.date())
    assert (current["products_created"], current["total_products"]) == (1, 2)

    later = usage_rollup.rollup_store(platform, store_id, now=now + timedelta(seconds=1))

    assert later.days == (now.date(),)  # yesterday was written once, after midnight
    assert row_of(platform, store_id, yesterday)[1] == ended
    assert rows_of(platform, store_id) == 2


def _limited(platform: Platform, store_id: uuid.UUID, gb: int | None, used: int) -> None:
    with platform.sessions.begin() as session:
        session.execute(
            update(Subscription).where(Subscription.store_id == store_id).values(max_storage_gb=gb)
        )
        session.execute(update(Store).where(Store.id == store_id).values(storage_used_bytes=used))


def test_the_storage_limit_refuses_writes_that_add_data_at_the_limit_only(
    platform: Platform,
) -> None:
    store_id = provisioned(platform, "full-shop", "sqlite")
    with platform.sessions() as master:
        store = stores.get_store(master, store_id)
        with platform.router.session(master, store) as tenant:
            kept = store_data.create_product(
                tenant, master, store, ProductInput("K", "Kept", price_minor=100)
            )
            tenant.commit()
            master.commit()
    gib = usage.BYTES_PER_GB

    _limited(platform, store_id, 1, gib - 1)  # just under: allowed
    with platform.sessions() as master:
        store = stores.get_store(master, store_id)
        with platform.router.session(master, store) as tenant:
            store_data.create_product(tenant, master, store, ProductInput("U", "Under"))
            tenant.commit()
            master.commit()

    _limited(platform, store_id, 1, gib)  # at the limit: refused
    with platform.sessions() as master:
        store = stores.get_store(master, store_id)
        with platform.router.session(master, store) as tenant:
            with pytest.raises(LimitExceeded) as refused:
                store_data.create_product(tenant, master, store, ProductInput("X", "Extra"))
            assert "free plan allows 1 GB of storage" in refused.value.message
            assert "1.0 GiB" in refused.value.message
            assert "--plan" in (refused.value.hint or "")
            assert "delete data" in (refused.value.hint or "")
            with pytest.raises(LimitExceeded, match="GB of storage"):
                store_data.create_order(
                    tenant, master, store, email="a@b.co", lines=[OrderLine(kept.id, 1)]
                )
            tenant.rollback()
            # Reads and deletes still work.
            assert {p.sku for p in store_data.list_products(tenant)} == {"K", "U"}
            store_data.delete_product(
                tenant, master, store, store_data.get_product(tenant, kept.id)
            )
            tenant.commit()
            master.commit()

    _limited(platform, store_id, None, 50 * gib)  # unlimited plan: never refused
    with platform.sessions() as master:
        store = stores.get_store(master, store_id)
        with platform.router.session(master, store) as tenant:
            store_data.create_product(tenant, master, store, ProductInput("V", "Vast"))
            tenant.commit()


def test_a_measured_store_over_a_tiny_limit_is_refused(
    platform: Platform, tenant_backend: str
) -> None:
    store_id = provisioned(platform, "tiny-shop", tenant_backend)
    _limited(platform, store_id, 0, 0)
    usage_rollup.rollup_store(platform, store_id)  # the real size: over 0 GB
    with platform.sessions() as master:
        store = stores.get_store(master, store_id)
        assert store.storage_used_bytes == measured_bytes(platform, "tiny-shop") > 0
        with (
            platform.router.session(master, store) as tenant,
            pytest.raises(LimitExceeded, match="allows 0 GB of storage"),
        ):
            store_data.create_product(tenant, master, store, ProductInput("X", "X"))


def test_a_schema_without_the_counted_tables_counts_zero(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
            # A products table without the timestamps the rollup reads.
            conn.exec_driver_sql("CREATE TABLE products (id INTEGER PRIMARY KEY)")
            assert usage.read_tenant_day(conn, date.today()) == usage.TenantDay()
    finally:
        engine.dispose()


def test_usage_days_are_the_window_asked_for_oldest_first(platform: Platform) -> None:
    store_id = provisioned(platform, "window-shop", "sqlite")
    today = datetime.now(UTC).date()
    with platform.sessions.begin() as session:
        for back in (40, 5, 0):
            session.add(
                UsageMetric(
                    store_id=store_id,
                    metric_date=today - timedelta(days=back),
                    orders_total_value_minor=back,
                    api_calls=back + 1,
                )
            )
    with platform.sessions() as session:
        store = stores.get_store(session, store_id)
        shown = usage.usage_days(session, store, 30)
        assert [d.date for d in shown] == [today - timedelta(days=5), today]
        assert [d.api_calls for d in shown] == [6, 1]
        assert len(usage.usage_days(session, store, 366)) == 3
        for bad in (0, 367, -1):
            with pytest.raises(InvalidInput, match="from 1 to 366"):
                usage.usage_days(session, store, bad)


def test_rows_are_written_once_on_a_master_on_each_backend(backend_platform: Platform) -> None:
    store_id = provisioned(backend_platform, "master-shop", "sqlite")
    today = datetime.now(UTC).date()
    first = usage_rollup.rollup_store(backend_platform, store_id)
    written = row_of(backend_platform, store_id, today)
    usage_rollup.rollup_store(backend_platform, store_id)
    assert first.storage_bytes == written[1]["storage_total_bytes"]
    assert row_of(backend_platform, store_id, today) == written
    assert rows_of(backend_platform, store_id) == 1
