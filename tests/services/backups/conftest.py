"""A provisioned store with products on each backend, and the installation's backup storage."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import URL

from tenantry.backup.storage import LocalStorage, storage_for
from tenantry.db.engines import make_engine
from tenantry.db.master.models import IntegrationConfig, Store
from tenantry.runtime import Platform
from tenantry.services import store_data, stores
from tenantry.services.connections import tenant_url
from tests.conftest import DbFactory
from tests.platform_fixtures import platform, settings
from tests.store_setup import connect_store

__all__ = ["platform", "settings"]


@dataclass
class ShopDb:
    """A provisioned store whose database holds a few products."""

    platform: Platform
    slug: str
    url: URL
    storage: LocalStorage

    @property
    def scope(self) -> str:
        """The store's backup scope."""
        return f"store:{self.slug}"


def table_rows(url: URL) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, sorted, as comparable tuples of strings: a logical dump."""
    engine = make_engine(url, pooled=False)
    try:
        with engine.connect() as conn:
            found: dict[str, list[tuple[Any, ...]]] = {}
            for table in sorted(inspect(conn).get_table_names()):
                quoted = conn.dialect.identifier_preparer.quote(table)
                rows = conn.execute(text(f"SELECT * FROM {quoted}")).all()
                found[table] = sorted(tuple(str(v) for v in row) for row in rows)
            return found
    finally:
        engine.dispose()


def add_products(shop: ShopDb, *skus: str) -> None:
    """Create products in the store's database through the store data service."""
    p = shop.platform
    with p.sessions() as master:
        store = stores.get_store(master, shop.slug)
        with p.router.session(master, store) as tenant:
            for sku in skus:
                store_data.create_product(
                    tenant,
                    master,
                    store,
                    store_data.ProductInput(sku=sku, name=f"Product {sku}", price_minor=1234),
                )
            tenant.commit()
            master.commit()


@pytest.fixture
def shop(platform: Platform, new_database: DbFactory) -> Iterator[ShopDb]:
    """Store ``shop`` provisioned into a fresh database on the backend, with 3 products."""
    url = new_database("shop")
    connect_store(platform, "shop", url, name="Shop")
    with platform.sessions() as session:
        store_id = session.scalars(select(Store.id).where(Store.slug == "shop")).one()
        config = session.scalars(
            select(IntegrationConfig).where(IntegrationConfig.store_id == store_id)
        ).one()
        stored_url = tenant_url(platform.box, config)
    storage = storage_for(platform.settings)
    assert isinstance(storage, LocalStorage)
    made = ShopDb(platform, "shop", stored_url, storage)
    add_products(made, "A-1", "A-2", "A-3")
    yield made
    platform.router.dispose_all()
