"""``app.tenant_session`` obeys the HTTP API's write rules: a move's write block, the plan's
limits and master's usage counters, on a SQLite store and on a PostgreSQL/MySQL one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantry import Tenantry
from tenantry.db.master.models import Store, Subscription
from tenantry.db.tenant.store.models import Order, Product
from tenantry.db.types import utcnow
from tenantry.errors import LimitExceeded, WritesBlocked
from tenantry.runtime import Platform
from tenantry.services.write_blocks import block_writes, lift_block
from tests.conftest import require_server
from tests.ended_sessions import ended_at_next_checkout
from tests.platform_fixtures import platform, settings
from tests.tenantry_fixtures import app, new_slug, open_store, product

__all__ = ["app", "platform", "settings"]

MOVE = "store is being moved to another server"


@contextmanager
def _store_on(app: Tenantry, platform: Platform, backend: str) -> Iterator[str]:
    """A provisioned store whose database lives on ``backend``; its slug."""
    from tests.services.test_moves import drop_server_databases, register

    slug = new_slug("rules")
    if backend == "sqlite":
        open_store(app, slug)
        yield slug
        return
    require_server(backend)
    register(platform, "srv", backend)
    try:
        open_store(app, slug, server="srv")
        yield slug
    finally:
        drop_server_databases(platform)


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def store_slug(request: pytest.FixtureRequest, app: Tenantry, platform: Platform) -> Iterator[str]:
    """A provisioned store whose database lives on the parametrised backend."""
    with _store_on(app, platform, request.param) as slug:
        yield slug


@pytest.fixture(params=["postgresql", "mysql"])
def server_store_slug(
    request: pytest.FixtureRequest, app: Tenantry, platform: Platform
) -> Iterator[str]:
    """A provisioned store whose database lives on a database server."""
    with _store_on(app, platform, request.param) as slug:
        yield slug


def master_store(app: Tenantry, slug: str) -> Store:
    with app.master_session() as master:
        store = master.scalars(select(Store).where(Store.slug == slug)).one()
        master.expunge(store)
        return store


def order(number: str) -> Order:
    zero = {f"{part}_minor": 0 for part in ("subtotal", "discount", "tax", "shipping", "total")}
    return Order(order_number=number, email="a@example.com", currency="USD", **zero)


def add(app: Tenantry, slug: str, *rows: object) -> None:
    with app.tenant_session(slug) as session:
        session.add_all(rows)


def rename_all(app: Tenantry, slug: str) -> None:
    with app.tenant_session(slug) as session:
        for found in session.scalars(select(Product)):
            found.name = "renamed"
        session.flush()


def skus(app: Tenantry, slug: str) -> set[str]:
    with app.tenant_session(slug) as session:
        return set(session.scalars(select(Product.sku)))


def test_writes_wait_out_a_move_block_and_reads_go_on(app: Tenantry, store_slug: str) -> None:
    with app.tenant_session(store_slug) as session:
        session.add(product("BEFORE"))
    store_id = master_store(app, store_slug).id
    with app.master_session() as master:  # as start_move does: the block on the store row
        block_writes(master, store_id, MOVE, utcnow() + timedelta(minutes=2))

    with pytest.raises(WritesBlocked, match="accepts no writes") as refused:
        add(app, store_slug, product("DURING"))
    assert 1 <= refused.value.retry_after <= 30
    with pytest.raises(WritesBlocked):
        rename_all(app, store_slug)

    async def write_async() -> None:
        try:
            async with app.tenant_async_session(store_slug) as session:
                session.add(product("ASYNC-DURING"))
        finally:
            await app.dispose_async_engines()

    with pytest.raises(WritesBlocked):
        asyncio.run(write_async())
    assert skus(app, store_slug) == {"BEFORE"}  # reads are served while blocked

    with app.master_session() as master:
        assert lift_block(master, store_id, MOVE)
    with app.tenant_session(store_slug) as session:
        session.add(product("AFTER"))
    assert skus(app, store_slug) == {"BEFORE", "AFTER"}


def test_plan_limits_refuse_and_counters_follow(app: Tenantry, store_slug: str) -> None:
    store_id = master_store(app, store_slug).id
    with app.master_session() as master:
        sub = master.scalars(select(Subscription).where(Subscription.store_id == store_id)).one()
        sub.max_products, sub.max_orders_per_month = 2, 1
    with app.tenant_session(store_slug) as session:
        session.add(product("P-1"))
    with pytest.raises(LimitExceeded, match="allows 2 products; this store has 1"):
        add(app, store_slug, product("P-2"), product("P-3"))
    assert skus(app, store_slug) == {"P-1"}  # nothing of the refused session was written
    assert master_store(app, store_slug).product_count == 1

    with app.tenant_session(store_slug) as session:
        session.add(product("P-2"))
        session.add(order("N-1"))
    counted = master_store(app, store_slug)
    assert (counted.product_count, counted.order_count) == (2, 1)
    with pytest.raises(LimitExceeded, match="allows 1 orders a month"):
        add(app, store_slug, order("N-2"))
    with pytest.raises(LimitExceeded, match="allows 2 products"):
        add(app, store_slug, product("P-3"))

    async def delete_one() -> None:
        async with app.tenant_async_session(store_slug) as session:
            await session.delete(await session.get_one(Product, _id_of(app, store_slug, "P-1")))
        await app.dispose_async_engines()

    async def add_two() -> None:
        try:
            async with app.tenant_async_session(store_slug) as session:
                session.add_all([product("P-4"), product("P-5")])
        finally:
            await app.dispose_async_engines()

    asyncio.run(delete_one())
    assert master_store(app, store_slug).product_count == 1  # the async session counts too
    with pytest.raises(LimitExceeded, match="allows 2 products; this store has 1"):
        asyncio.run(add_two())
    assert skus(app, store_slug) == {"P-2"}


def _id_of(app: Tenantry, slug: str, sku: str) -> object:
    with app.tenant_session(slug) as session:
        return session.scalars(select(Product.id).where(Product.sku == sku)).one()


def test_a_read_whose_connection_the_server_ends_as_it_is_taken_is_served(
    app: Tenantry, server_store_slug: str
) -> None:
    add(app, server_store_slug, product("KEPT"))
    with ended_at_next_checkout(app.tenant_engine(server_store_slug)) as ended:
        found = skus(app, server_store_slug)
    assert ended, "the read never took a pooled connection"
    assert found == {"KEPT"}
    # A write whose first statement meets the same: sent again, written once.
    with ended_at_next_checkout(app.tenant_engine(server_store_slug)) as ended:
        rename_all(app, server_store_slug)
    assert ended
    with app.tenant_session(server_store_slug) as session:
        assert list(session.scalars(select(Product.name))) == ["renamed"]


def test_an_async_read_whose_connection_the_server_ends_as_it_is_taken_is_served(
    app: Tenantry, server_store_slug: str
) -> None:
    add(app, server_store_slug, product("ASYNC"))

    async def read() -> tuple[list[int], set[str]]:
        try:
            async with app.tenant_async_session(server_store_slug) as session:
                await session.scalar(select(Product.sku))  # the pool now holds a connection
            engine = session.bind
            assert isinstance(engine, AsyncEngine)
            with ended_at_next_checkout(engine.sync_engine) as ended:
                async with app.tenant_async_session(server_store_slug) as session:
                    found = set(await session.scalars(select(Product.sku)))
            return ended, found
        finally:
            await app.dispose_async_engines()

    ended, found = asyncio.run(read())
    assert ended, "the read never took a pooled connection"
    assert found == {"ASYNC"}
