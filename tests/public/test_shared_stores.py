"""SQLite, PostgreSQL own-database and PostgreSQL shared-schema stores side by side through
``Tenantry``: each store's sessions (sync and async) see only its rows, and the rules (a
suspended store refused) hold for shared-schema stores as for the others."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from tenantry import StoreSuspended, Tenantry
from tenantry.db.tenant.store.models import Product
from tenantry.runtime import Platform
from tests.platform_fixtures import platform, settings
from tests.public.test_tenantry import skus
from tests.shared_schema_fixtures import SharedDb, shared_db
from tests.tenantry_fixtures import app, new_slug, open_store, pg_server, product

__all__ = ["app", "pg_server", "platform", "settings", "shared_db"]


def test_sqlite_own_database_and_shared_schema_stores_side_by_side(
    app: Tenantry, platform: Platform, pg_server: str, shared_db: SharedDb
) -> None:
    lite, own = new_slug("side-lite"), new_slug("side-own")
    one, two = new_slug("side-sh1"), new_slug("side-sh2")
    open_store(app, lite)
    open_store(app, own, server=pg_server)
    for slug in (one, two):
        app.stores.create(slug, slug.title())
        done = app.provision_shared(slug, shared_db.target)
        assert done.database == shared_db.database
    every = (lite, own, one, two)
    for slug in every:
        with app.tenant_session(slug) as session:
            session.add(product(f"{slug}-1"))
    for slug in every:
        assert skus(app, slug) == {f"{slug}-1"}
    # The two shared-schema stores are served by one pool.
    assert app.tenant_engine(one).pool is app.tenant_engine(two).pool
    assert app.tenant_engine(one).pool is not app.tenant_engine(own).pool

    async def work() -> dict[str, set[str]]:
        for slug in (one, two):
            async with app.tenant_async_session(slug) as session:
                session.add(product(f"{slug}-async"))
        seen = {}
        for slug in every:
            async with app.tenant_async_session(slug) as session:
                seen[slug] = set((await session.scalars(select(Product.sku))).all())
        await app.dispose_async_engines()
        return seen

    seen = asyncio.run(work())
    assert seen == {
        lite: {f"{lite}-1"},
        own: {f"{own}-1"},
        one: {f"{one}-1", f"{one}-async"},
        two: {f"{two}-1", f"{two}-async"},
    }
    app.stores.suspend(one)
    with pytest.raises(StoreSuspended), app.tenant_session(one):
        pass
    assert skus(app, two) == {f"{two}-1", f"{two}-async"}
