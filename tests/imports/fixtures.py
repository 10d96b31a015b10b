"""Fixtures of the import tests: a shared shop database on any backend, and store slugs of the
test's own (their databases and logins on the test servers dropped after)."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from tenantry.db.admin import create_database, drop_database
from tenantry.db.engines import make_engine
from tenantry.db.urls import parse_url
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.connections import migrator_url
from tenantry.settings import load_settings
from tests.conftest import SERVER_URLS, _server_problem, require_server, server_databases
from tests.fixtures import shared_shop

MAPPING = Path(__file__).resolve().parent.parent / "fixtures" / "shared_shop.yml"

#: The source engine of each target engine's test: always another engine.
SOURCE_FOR = {"sqlite": "postgresql", "postgresql": "mysql", "mysql": "sqlite"}

SourceFactory = Callable[..., URL]
Rows = Counter[tuple[Any, ...]]


def admin_url(backend: str) -> str:
    """The test server's admin URL, as users register it (MySQL without a database)."""
    raw = SERVER_URLS[backend]
    return raw.rsplit("/", 1)[0] if backend == "mysql" and raw.count("/") > 2 else raw


@pytest.fixture
def shop_prefix() -> Iterator[str]:
    """A slug prefix no other test uses; the databases and logins its stores got on the test
    servers (``t_<prefix>_…``) are dropped after the test."""
    prefix = f"imp{uuid.uuid4().hex[:6]}"
    yield prefix
    from tests.store_logins import drop_logins_named

    for backend in ("postgresql", "mysql"):
        if _server_problem(backend):
            continue
        for name in server_databases(backend, f"t_{prefix}_"):
            drop_database(parse_url(SERVER_URLS[backend]).set(database=name))
        drop_logins_named(backend, f"t_{prefix}_")


@pytest.fixture
def shared_source(tmp_path: Path) -> Iterator[SourceFactory]:
    """``shared_source(backend, prefix, stores=N)``: a new shared shop database on ``backend``
    (dropped after the test)."""
    made: list[URL] = []

    def make(backend: str, prefix: str, *, stores_count: int = 6, scale: int = 1) -> URL:
        require_server(backend)
        name = f"tt_shared_{uuid.uuid4().hex[:10]}"
        if backend == "sqlite":
            url = parse_url(f"sqlite:///{tmp_path / (name + '.db')}")
        else:
            url = parse_url(SERVER_URLS[backend]).set(database=name)
            create_database(url)
        made.append(url)
        shared_shop.build_shared_shop(url, stores_count=stores_count, scale=scale, prefix=prefix)
        return url

    yield make
    for url in made:
        drop_database(url)


def raw(url: URL) -> str:
    """``url`` as text, password included (for the command line)."""
    return url.render_as_string(hide_password=False)


def source_rows(url: URL, table: str, store_id: int, columns: list[str]) -> Rows:
    """One store's rows of a shared-shop table (``columns``), values normalised, counted."""
    from tenantry.db.copy import normalise

    t = shared_shop.metadata.tables[table]
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            if "store_id" in t.c:
                query = select(*(t.c[c] for c in columns)).where(t.c.store_id == store_id)
            else:  # order_items: through their orders
                orders = shared_shop.orders
                query = select(*(t.c[c] for c in columns)).where(
                    t.c.order_id.in_(select(orders.c.id).where(orders.c.store_id == store_id))
                )
            return Counter(tuple(_norm(normalise(v)) for v in row) for row in conn.execute(query))
    finally:
        engine.dispose()


def _norm(value: Any) -> Any:
    # UUIDs read back as text with or without dashes depending on the engine.
    return value.replace("-", "") if isinstance(value, str) and len(value) == 36 else value


def store_url(slug: str) -> URL:
    """Store ``slug``'s own database (the migrator login)."""
    platform = Platform.open(load_settings())
    try:
        with platform.sessions() as session:
            store = stores.get_store(session, slug)
            config = stores.active_connection(session, store)
            assert config is not None
            return migrator_url(session, platform.box, config)
    finally:
        platform.close()


def store_rows(slug: str, table: str, columns: list[str]) -> Rows:
    """Every row (``columns``) of ``table`` in store ``slug``'s own database, counted."""
    from tenantry.db.copy import normalise
    from tenantry.db.tenant.store.models import metadata

    t = metadata.tables[table]
    engine = make_engine(store_url(slug), pool_size=1)
    try:
        with engine.connect() as conn:
            rows = list(conn.execute(select(*(t.c[c] for c in columns))))
    finally:
        engine.dispose()
    return Counter(tuple(_norm(normalise(v)) for v in row) for row in rows)


#: (tenant table, its columns, the shared table, the same columns there) compared per store.
COMPARED = [
    ("customers", ["id", "email", "first_name"], "customers", ["id", "email", "first_name"]),
    ("categories", ["id", "parent_id", "slug"], "categories", ["id", "parent_id", "slug"]),
    ("products", ["id", "sku", "name", "is_active"], "products", ["id", "sku", "title", "active"]),
    (
        "product_categories",
        ["product_id", "category_id"],
        "product_categories",
        ["product_id", "category_id"],
    ),
    (
        "orders",
        ["id", "order_number", "customer_id", "total_minor"],
        "orders",
        ["id", "order_number", "customer_id", "total_cents"],
    ),
    (
        "order_items",
        ["id", "order_id", "product_id", "quantity", "total_minor"],
        "order_items",
        ["id", "order_id", "product_id", "quantity", "total_cents"],
    ),
]


def _product_categories_of(url: Any, store_id: int) -> Any:
    """product_categories reach their store through products (not a column of their own)."""
    from tenantry.db.copy import normalise

    pc, products = shared_shop.product_categories, shared_shop.products
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            query = select(pc.c.product_id, pc.c.category_id).where(
                pc.c.product_id.in_(select(products.c.id).where(products.c.store_id == store_id))
            )
            rows = conn.execute(query)
            return Counter(tuple(str(normalise(v)).replace("-", "") for v in row) for row in rows)
    finally:
        engine.dispose()


def assert_exactly_once(source: Any, prefix: str, stores: int) -> None:
    """Every store's database holds each of its source rows once, and nothing else."""
    for store_id in range(1, stores + 1):
        slug = f"{prefix}-{store_id:03d}"
        for table, columns, shared_table, shared_columns in COMPARED:
            got = store_rows(slug, table, columns)
            if shared_table == "product_categories":
                want = _product_categories_of(source, store_id)
                got = type(got)(
                    {tuple(str(v).replace("-", "") for v in k): n for k, n in got.items()}
                )
            else:
                want = source_rows(source, shared_table, store_id, shared_columns)
            assert got == want, f"{slug}.{table} differs from the source"
            assert sum(got.values()) > 0
