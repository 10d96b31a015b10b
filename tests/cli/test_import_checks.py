"""The data checks of ``tenantry import shared`` done by the source's server
(tenantry/imports/sql_store_checks.py and sql_value_checks.py), on each source engine: every
kind of dirty row caught, with the same report as the Python checks that read every row."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import URL

from tenantry.db.engines import make_engine
from tenantry.imports.mapping import load_mapping
from tenantry.imports.plan import ImportPlan, build_plan
from tenantry.operations.import_shared import SharedImport
from tenantry.runtime import Platform
from tenantry.settings import load_settings
from tests.cli.conftest import Invoke
from tests.fixtures import shared_shop
from tests.imports.fixtures import MAPPING, SourceFactory, shared_source, shop_prefix

__all__ = ["shared_source", "shop_prefix"]  # fixtures, imported to be found

ORPHAN, LONG, CROSS, NO_ORDER, NO_PRODUCT, TO_LONG = (str(n) * 32 for n in range(1, 7))


def _dirty(url: URL, engine: str) -> None:
    """Rows an app's bugs leave behind, written around the source's foreign keys: a product of
    no store, one whose status is too long for tenantry, and order items pointing to another
    store's product, to no order, to no product, and to the product with the long status."""
    # Not tenantry's engine: it turns SQLite's foreign keys on.
    db = create_engine(url) if engine == "sqlite" else make_engine(url, pool_size=1)
    products, items, orders = shared_shop.products, shared_shop.order_items, shared_shop.orders
    try:
        with db.begin() as conn:
            if engine == "postgresql":
                conn.execute(text("SET LOCAL session_replication_role = replica"))
                conn.execute(text("ALTER TABLE products ALTER COLUMN status TYPE varchar(64)"))
            elif engine == "mysql":
                conn.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
                conn.execute(text("ALTER TABLE products MODIFY status VARCHAR(64) NOT NULL"))
            product = {
                "sku": "X",
                "title": "Dirty",
                "status": "active",
                "active": True,
                "created_at": shared_shop.START,
            }
            conn.execute(
                products.insert(),
                [
                    {**product, "id": uuid.UUID(ORPHAN), "store_id": 999, "slug": "orphan"},
                    {
                        **product,
                        "id": uuid.UUID(LONG),
                        "store_id": 1,
                        "slug": "long",
                        "status": "x" * 40,
                    },
                ],
            )
            order = conn.scalar(select(orders.c.id).where(orders.c.store_id == 1).limit(1))
            other = conn.scalar(select(products.c.id).where(products.c.store_id == 2).limit(1))
            item = {"sku": "X", "name": "Dirty", "quantity": 1, "unit_price_cents": 1}
            conn.execute(
                items.insert(),
                [
                    {**item, "total_cents": 1, "id": uuid.UUID(key), "order_id": o, "product_id": p}
                    for key, o, p in (
                        (CROSS, order, other),
                        (NO_ORDER, uuid.UUID("9" * 32), None),  # no product: nothing to check
                        (NO_PRODUCT, order, uuid.UUID("8" * 32)),
                        (TO_LONG, order, uuid.UUID(LONG)),
                    )
                ],
            )
    finally:
        db.dispose()


@pytest.fixture
def plans(cli: Invoke) -> Iterator[Any]:
    """``plans(source)``: the plan of importing ``source`` checked by its server, and checked
    in Python."""
    assert cli("init").exit_code == 0
    platform = Platform.open(load_settings())
    jobs: list[SharedImport] = []

    def make(source: URL) -> tuple[ImportPlan, ImportPlan]:
        job = SharedImport(platform, source, load_mapping(MAPPING), "test")
        jobs.append(job)
        made = []
        for in_sql in (True, False):
            with platform.sessions() as session:
                made.append(
                    build_plan(
                        job.source,
                        session,
                        job.mapping,
                        platform.tenant_spec,
                        create_stores=True,
                        checks_in_sql=in_sql,
                    )
                )
        return made[0], made[1]

    yield make
    for job in jobs:
        job.close()
    platform.close()


def _shown(key: str, engine: str) -> str:
    """A source key as the report shows it: a native UUID (PostgreSQL, MariaDB) with dashes,
    text (SQLite) as it is."""
    return key if engine == "sqlite" else str(uuid.UUID(key))


@pytest.mark.parametrize("engine", ["sqlite", "postgresql", "mysql"])
def test_dirty_rows_are_caught_by_the_source_server_as_python_reports_them(
    plans: Any, engine: str, shop_prefix: str, shared_source: SourceFactory
) -> None:
    source = shared_source(engine, shop_prefix, stores_count=3)
    _dirty(source, engine)
    in_sql, in_python = plans(source)
    assert in_sql.checked_in_sql is True
    assert in_python.checked_in_sql is False
    # The same report, problem by problem (kind, place, message, rows, example keys, detail)…
    assert [p.as_dict() for p in in_sql.problems] == [p.as_dict() for p in in_python.problems]
    # … and the same rows per store and table.
    assert [s.as_dict() for s in in_sql.stores] == [s.as_dict() for s in in_python.stores]

    found = {(p.kind, p.table, p.column): p for p in in_sql.problems}
    assert set(found) == {
        ("orphan", "products", "store_id"),
        ("bad_value", "products", "status"),
        ("orphan", "order_items", "order_id"),
        ("cross_store_fk", "order_items", "product_id"),
        ("dangling_fk", "order_items", "product_id"),
    }
    assert found[("orphan", "products", "store_id")].examples == [_shown(ORPHAN, engine)]
    too_long = found[("bad_value", "products", "status")]
    assert too_long.message == "values longer than the column's 32 characters"
    assert too_long.detail == f"{_shown(LONG, engine)}: 40 characters"
    assert found[("orphan", "order_items", "order_id")].examples == [_shown(NO_ORDER, engine)]
    assert found[("cross_store_fk", "order_items", "product_id")].examples == [
        _shown(CROSS, engine)
    ]
    # To no product, and to the product whose status does not fit (it will not be imported).
    dangling = found[("dangling_fk", "order_items", "product_id")]
    assert dangling.examples == sorted([_shown(NO_PRODUCT, engine), _shown(TO_LONG, engine)])
    assert dangling.count == 2
    first = next(s for s in in_sql.stores if s.slug == f"{shop_prefix}-001")
    clean = shared_shop.count_rows(source, shared_shop.products, store_id=1)
    assert first.rows["products"] == clean - 1  # the long one is not counted


@pytest.mark.parametrize("engine", ["sqlite", "postgresql", "mysql"])
def test_a_clean_source_is_checked_by_its_server(
    plans: Any, engine: str, shop_prefix: str, shared_source: SourceFactory
) -> None:
    source = shared_source(engine, shop_prefix, stores_count=2)
    in_sql, in_python = plans(source)
    assert in_sql.checked_in_sql is True
    assert in_sql.problems == [] == in_python.problems
    assert [s.as_dict() for s in in_sql.stores] == [s.as_dict() for s in in_python.stores]
    for store in in_sql.stores:
        assert store.rows["orders"] == shared_shop.count_rows(
            source, shared_shop.orders, store_id=store.key
        )
