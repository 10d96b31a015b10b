"""What a tenant read costs stays fixed: a page of products is the same statements on the
store's database however many products it lists (no query per product), concurrent reads
reuse the pools' connections instead of opening one each, and a read takes no write lock on
the store's database."""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from tenantry.db import sqlite_writers
from tenantry.runtime import Platform
from tenantry.services import stores
from tests.api.backend_shop import provisioned, provisioning_on, shop
from tests.api.conftest import Api
from tests.ended_sessions import ended_at_next_checkout

__all__ = ["shop"]


def _app_platform(api: Api) -> Platform:
    """The platform the app serves from (not the test's own, which opened other engines)."""
    platform: Platform = api.client.app.state.platform  # type: ignore[attr-defined]
    return platform


def _tenant_engine(api: Api, slug: str) -> Engine:
    """The engine the app's router serves ``slug`` from (cached since its first call)."""
    platform = _app_platform(api)
    with platform.sessions() as session:
        return platform.router.engine(session, stores.get_store(session, slug))


def test_a_page_of_products_costs_the_same_statements_however_many_it_lists(
    api: Api, shop: str
) -> None:
    base = f"/stores/{shop}/products"
    first = api.client.post(
        base, json={"sku": "P0", "name": "P0", "price_minor": 100}, headers=api.admin
    )
    assert first.status_code == 201, first.text
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement)

    event.listen(_tenant_engine(api, shop), "before_cursor_execute", record)
    one = api.client.get(base, headers=api.admin)
    assert [p["price_minor"] for p in one.json()] == [100]
    for_one = list(seen)
    for n in range(1, 6):  # odd ones priced, even ones not
        body: dict[str, Any] = {"sku": f"P{n}", "name": f"P{n}"}
        if n % 2:
            body["price_minor"] = 100 + n
        assert api.client.post(base, json=body, headers=api.admin).status_code == 201
    changed = api.client.patch(
        f"{base}/{first.json()['id']}", json={"price_minor": 150}, headers=api.admin
    )
    assert changed.status_code == 200, changed.text
    seen.clear()
    page = api.client.get(base, headers=api.admin)
    assert page.status_code == 200, page.text
    assert len(seen) == len(for_one), seen  # six products: the statements of one
    listed = page.json()
    assert {p["sku"]: p["price_minor"] for p in listed} == {
        "P0": 150,
        "P1": 101,
        "P2": None,
        "P3": 103,
        "P4": None,
        "P5": 105,
    }
    assert {p["sku"]: p["currency"] for p in listed}["P1"] == "USD"
    # Each product on the page is the product as shown on its own.
    for product in listed:
        alone = api.client.get(f"{base}/{product['id']}", headers=api.admin)
        assert alone.json() == product


def test_concurrent_reads_reuse_the_pools_connections(api: Api) -> None:
    assert api.provisioned_store("busy-reads")["job"]["status"] == "completed"
    base = "/stores/busy-reads/products"
    made = api.client.post(
        base, json={"sku": "R1", "name": "R1", "price_minor": 5}, headers=api.admin
    )
    assert made.status_code == 201, made.text
    opened = {"master": 0, "tenant": 0}

    def counter(role: str) -> Any:
        def count(_dbapi_conn: Any, _record: Any) -> None:
            opened[role] += 1

        return count

    event.listen(_app_platform(api).master_engine, "connect", counter("master"))
    event.listen(_tenant_engine(api, "busy-reads"), "connect", counter("tenant"))
    threads = 16
    before = api.client.get("/stores/busy-reads", headers=api.admin).json()["api_calls_month"]

    def reads(_: int) -> list[int]:
        return [api.client.get(base, headers=api.admin).status_code for _ in range(10)]

    with ThreadPoolExecutor(threads) as pool:
        statuses = [code for batch in pool.map(reads, range(threads)) for code in batch]
    assert statuses == [200] * threads * 10
    # Each call counted once, committed before it was answered.
    after = api.client.get("/stores/busy-reads", headers=api.admin).json()["api_calls_month"]
    assert after == before + threads * 10
    # A request holds at most one connection of each at a time: 160 requests from 16 threads
    # open at most 16 more, where closing all but 5 on return opened one for most of them.
    assert opened["master"] <= threads, opened
    assert opened["tenant"] <= threads, opened


def test_a_read_is_served_while_another_connection_holds_the_write_lock(api: Api) -> None:
    assert api.provisioned_store("locked-shop")["job"]["status"] == "completed"
    base = "/stores/locked-shop/products"
    made = api.client.post(base, json={"sku": "L1", "name": "L1"}, headers=api.admin)
    assert made.status_code == 201, made.text
    path = _tenant_engine(api, "locked-shop").url.database
    assert path
    # A writer elsewhere (a worker, another process) in the middle of its transaction: it
    # holds tenantry's writer queue and SQLite's own write lock on the store's database.
    queue = sqlite_writers.acquire(Path(path), 1000)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("UPDATE products SET name = 'being changed'")
        started = time.monotonic()
        read = api.client.get(base, headers=api.admin)
        waited = time.monotonic() - started
        assert read.status_code == 200, read.text
        assert [p["name"] for p in read.json()] == ["L1"]  # the last committed state
        assert waited < 3  # not the 10 s busy timeout a write lock would have waited
    finally:
        holder.close()  # rolls its transaction back
        sqlite_writers.release(queue)


@pytest.fixture(params=("postgresql", "mysql"))
def server_shop(request: pytest.FixtureRequest, api: Api, server_slug: str) -> str:
    """A provisioned store (slug) with its database on a database server."""
    return provisioned(api, server_slug, provisioning_on(api, request.param))


def test_a_read_whose_connection_the_server_ends_as_it_is_taken_is_answered(
    api: Api, server_shop: str
) -> None:
    base = f"/stores/{server_shop}/products"
    made = api.client.post(base, json={"sku": "E1", "name": "E1"}, headers=api.admin)
    assert made.status_code == 201, made.text
    # After the pool's ping has found the connection alive and before the request's first
    # statement: the window in which a move's fence can end an idle pooled session.
    with ended_at_next_checkout(_tenant_engine(api, server_shop)) as ended:
        read = api.client.get(base, headers=api.admin)
    assert ended, "the read never took a pooled connection"
    assert read.status_code == 200, read.text
    assert [p["sku"] for p in read.json()] == ["E1"]
    # The store's pool works on: the ended connection was dropped, not handed out again.
    again = api.client.get(base, headers=api.admin)
    assert again.status_code == 200, again.text
