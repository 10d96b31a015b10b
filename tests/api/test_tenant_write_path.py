"""Concurrent writes to one store's SQLite database all land: a write request takes the
file's write lock when its transaction begins, so a write that first reads (the plan's
product limit, the sku check) waits its turn behind another writer instead of failing at
once with "database is locked" (SQLite cannot upgrade a read snapshot another writer has
moved past, and its busy timeout does not cover that case).

Master is on each backend in turn: on SQLite master's own write lock already puts write
requests in a line; on a server nothing else does, which is how production runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from tenantry.db.engines import make_engine
from tenantry.db.urls import parse_url
from tenantry.operations.usage_rollup import rollup_store
from tenantry.runtime import Platform
from tenantry.services import stores
from tests.api.conftest import Api, open_api
from tests.conftest import SERVER_URLS
from tests.platform_fixtures import backend_platform

__all__ = ["backend_platform"]

WRITERS = 8
EACH = 12


@pytest.fixture
def api_on_backend(backend_platform: Platform) -> Iterator[Api]:
    """The API on an installation whose master and billing are on ``backend``."""
    with open_api(backend_platform.settings, backend_platform) as opened:
        yield opened


def test_concurrent_product_writes_to_one_sqlite_store_all_succeed(api_on_backend: Api) -> None:
    api = api_on_backend
    api.provisioned_store("busy-writes")  # a SQLite file: no server is named
    base = "/stores/busy-writes/products"

    def write(worker: int) -> list[tuple[int, str]]:
        answers = []
        for n in range(EACH):
            body = {"sku": f"W{worker}-{n}", "name": f"W{worker}-{n}", "price_minor": 100}
            answer = api.client.post(base, json=body, headers=api.admin)
            answers.append((answer.status_code, answer.text[:200]))
        return answers

    with ThreadPoolExecutor(WRITERS) as pool:
        answers = [a for batch in pool.map(write, range(WRITERS)) for a in batch]
    refused = [a for a in answers if a[0] != 201]
    assert refused == [], f"{len(refused)} of {len(answers)} writes refused, e.g. {refused[:3]}"
    listed = api.client.get(base, params={"limit": 500}, headers=api.admin).json()
    assert sorted(p["sku"] for p in listed) == sorted(
        f"W{w}-{n}" for w in range(WRITERS) for n in range(EACH)
    )


def _store_with_a_product(api: Api, slug: str) -> str:
    """Provision store ``slug`` with one priced product; the product's id."""
    api.provisioned_store(slug)
    made = api.client.post(
        f"/stores/{slug}/products",
        json={"sku": "TEE", "name": "Tee", "price_minor": 1500},
        headers=api.admin,
    )
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _order_count(api: Api, slug: str) -> int:
    answer = api.client.get(f"/stores/{slug}", headers=api.admin)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["order_count"])


def test_orders_placed_at_once_are_each_counted_in_master(api_on_backend: Api) -> None:
    # Master's order count is added to in SQL: a request that read the count before another
    # one committed does not overwrite that one's order.
    api = api_on_backend
    product = _store_with_a_product(api, "busy-orders")

    def place(worker: int) -> list[int]:
        body = {
            "email": f"buyer{worker}@example.com",
            "items": [{"product_id": product, "quantity": 1}],
        }
        return [
            api.client.post("/stores/busy-orders/orders", json=body, headers=api.admin).status_code
            for _ in range(EACH // 2)
        ]

    with ThreadPoolExecutor(WRITERS) as pool:
        codes = [c for batch in pool.map(place, range(WRITERS)) for c in batch]
    assert codes == [201] * (WRITERS * (EACH // 2))
    assert _order_count(api, "busy-orders") == WRITERS * (EACH // 2)


@pytest.mark.server
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_master_failing_after_the_stores_commit_does_not_fail_the_write(
    api_on_backend: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The order is in the store's database once its commit returned: the client is told so
    # (a 503 "nothing changed" would be untrue, and a retry would place it twice). Master's
    # counter, whose commit failed, is caught up by the store's next usage rollup.
    api = api_on_backend
    product = _store_with_a_product(api, "late-master")
    master_db = api.platform.settings.master_url.database
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "tenant_call.before_master_commit=sleep:2")

    def cut_master() -> None:
        # While the request sleeps between the two commits, master's server ends every
        # session of the API on master (as a failover or a restart would).
        time.sleep(1)
        admin = make_engine(parse_url(SERVER_URLS["postgresql"]), pooled=False)
        try:
            with admin.begin() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": master_db},
                )
        finally:
            admin.dispose()

    body = {"email": "late@example.com", "items": [{"product_id": product, "quantity": 2}]}
    with ThreadPoolExecutor(1) as pool, caplog.at_level(logging.WARNING, "tenantry.api"):
        cutting = pool.submit(cut_master)
        placed = api.client.post("/stores/late-master/orders", json=body, headers=api.admin)
        cutting.result()
    monkeypatch.delenv("TENANTRY_FAILPOINTS")
    assert placed.status_code == 201, placed.text
    listed = api.client.get("/stores/late-master/orders", headers=api.admin).json()
    assert [o["id"] for o in listed] == [placed.json()["id"]]
    assert "master's counters were not updated" in caplog.text
    assert _order_count(api, "late-master") == 0  # behind: its update was never committed

    with api.platform.sessions() as session:
        store_id = stores.get_store(session, "late-master").id
    rollup_store(api.platform, store_id)
    assert _order_count(api, "late-master") == 1
