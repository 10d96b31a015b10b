"""Stores, provisioning and store data over HTTP, with the data landing in the store's own DB."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from tenantry.db import sqlite_writers
from tenantry.db.billing.models import BillingCustomer
from tenantry.db.engines import BUSY_TIMEOUT_ENV, make_engine
from tenantry.db.master.models import ApiKey, ApiUsageLog, Subscription
from tenantry.db.tenant.store.models import Product
from tenantry.db.urls import parse_url
from tenantry.runtime import Platform
from tenantry.settings import Settings
from tests.api.conftest import Api, open_api
from tests.helpers import busy_writer


def test_store_lifecycle_and_data_in_its_own_database(api: Api) -> None:
    result = api.provisioned_store("corner-shop")
    job = result["job"]
    assert job["status"] == "completed", job
    assert job["progress"] == 100
    assert job["tables_created"] == job["total_tables"] == 15
    assert job["error"] is None

    shown = api.client.get("/stores/corner-shop", headers=api.admin).json()
    assert shown["status"] == "active"
    assert shown["database_status"] == "active"
    assert shown["database_type"] == "sqlite"

    made = api.client.post(
        "/stores/corner-shop/products",
        json={"sku": "MUG-1", "name": "Mug", "price_minor": 1250},
        headers=api.admin,
    )
    assert made.status_code == 201, made.text
    product = made.json()
    assert product["price_minor"] == 1250
    order = api.client.post(
        "/stores/corner-shop/orders",
        json={"email": "ann@example.com", "items": [{"product_id": product["id"], "quantity": 3}]},
        headers=api.admin,
    )
    assert order.status_code == 201, order.text
    assert order.json()["total_minor"] == 3750
    listed = api.client.get("/stores/corner-shop/orders", headers=api.admin).json()
    assert [o["order_number"] for o in listed] == [order.json()["order_number"]]

    patched = api.client.patch(
        f"/stores/corner-shop/products/{product['id']}",
        json={"name": "Big mug", "price_minor": 1500},
        headers=api.admin,
    )
    assert patched.json()["name"] == "Big mug"
    assert patched.json()["price_minor"] == 1500

    counters = api.client.get("/stores/corner-shop", headers=api.admin).json()
    assert counters["product_count"] == 1
    assert counters["order_count"] == 1
    assert counters["api_calls_month"] == 4

    # The product lives in the store's own database file, and nowhere in master.
    tenant_files = list((api.platform.settings.data_dir / "tenants").glob("corner-shop-*.db"))
    assert len(tenant_files) == 1
    engine = make_engine(parse_url(f"sqlite:///{tenant_files[0]}"))
    try:
        with engine.connect() as conn:
            skus = conn.scalars(select(Product.sku)).all()
    finally:
        engine.dispose()
    assert skus == ["MUG-1"]
    with api.platform.master_engine.connect() as conn:
        tables = conn.scalars(text("SELECT name FROM sqlite_master WHERE type='table'")).all()
    assert "products" not in tables

    deleted = api.client.delete(f"/stores/corner-shop/products/{product['id']}", headers=api.admin)
    assert deleted.status_code == 204
    assert (
        api.client.get(
            f"/stores/corner-shop/products/{product['id']}", headers=api.admin
        ).status_code
        == 404
    )


def test_store_keys_see_only_their_store(api: Api) -> None:
    api.provisioned_store("shop-a")
    api.provisioned_store("shop-b")
    key_a = api.store_key("shop-a")
    listed = api.client.get("/stores", headers=key_a).json()
    assert [s["slug"] for s in listed["items"]] == ["shop-a"]
    assert (
        api.client.post(
            "/stores/shop-a/products", json={"sku": "A1", "name": "A"}, headers=key_a
        ).status_code
        == 201
    )
    for path in ("/stores/shop-b", "/stores/shop-b/products", "/stores/shop-b/orders"):
        refused = api.client.get(path, headers=key_a)
        assert refused.status_code == 404, path
        assert refused.json()["error"]["type"] == "NotFound"
    b_id = api.client.get("/stores/shop-b", headers=api.admin).json()["id"]
    assert api.client.get(f"/stores/{b_id}/products", headers=key_a).status_code == 404
    assert (
        api.client.post("/stores", json={"slug": "sneaky", "name": "S"}, headers=key_a).status_code
        == 403
    )
    b_products = api.client.get("/stores/shop-b/products", headers=api.admin).json()
    assert b_products == []


def test_stores_are_listed_by_status_with_the_total_of_that_status(api: Api) -> None:
    for slug in ("live-a", "live-b", "live-c"):
        api.provisioned_store(slug)
    for slug in ("wait-a", "wait-b"):
        assert api.client.post(
            "/stores", json={"slug": slug, "name": slug}, headers=api.admin
        ).is_success
    assert api.client.post("/stores/live-b/suspend", headers=api.admin).status_code == 200

    def listed(query: str, headers: dict[str, str] | None = None) -> tuple[list[str], int]:
        got = api.client.get(f"/stores?{query}", headers=headers or api.admin)
        assert got.status_code == 200, got.text
        body = got.json()
        return [s["slug"] for s in body["items"]], body["total"]

    assert listed("status=active") == (["live-a", "live-c"], 2)
    assert listed("status=pending") == (["wait-a", "wait-b"], 2)
    assert listed("status=suspended") == (["live-b"], 1)
    assert listed("status=failed") == ([], 0)
    # A page of the filtered stores: the total is of every store in that status.
    assert listed("status=active&limit=1&offset=1") == (["live-c"], 2)
    items = api.client.get("/stores?status=active", headers=api.admin).json()["items"]
    assert {s["status"] for s in items} == {"active"}
    # A store key sees its own store, in the status asked for or not at all.
    key_c = api.store_key("live-c")
    assert listed("status=active", key_c) == (["live-c"], 1)
    assert listed("status=pending", key_c) == ([], 0)

    bad = api.client.get("/stores?status=sleeping", headers=api.admin)
    assert bad.status_code == 422
    message = bad.json()["error"]["message"]
    assert "status" in message, message
    assert "pending" in message, message


def test_bad_input_is_a_clear_4xx(api: Api) -> None:
    bad_slug = api.client.post("/stores", json={"slug": "Bad_Slug", "name": "x"}, headers=api.admin)
    assert bad_slug.status_code == 422
    assert "slug" in bad_slug.json()["error"]["message"]
    assert (
        api.client.post("/stores", json={"slug": "ok-shop"}, headers=api.admin).status_code == 422
    )
    assert api.client.get("/stores").status_code == 401
    assert api.client.get("/stores", headers=api.as_key("tnt_nope_nope")).status_code == 401
    assert api.client.get("/stores/none-such", headers=api.admin).status_code == 404
    api.client.post("/stores", json={"slug": "dup-shop", "name": "D"}, headers=api.admin)
    dup = api.client.post("/stores", json={"slug": "dup-shop", "name": "D"}, headers=api.admin)
    assert dup.status_code == 409
    unknown_server = api.client.post(
        "/stores/dup-shop/provision",
        json={"mode": "create_new", "server": "nowhere"},
        headers=api.admin,
    )
    assert unknown_server.status_code == 404
    not_yet = api.client.get("/stores/dup-shop/products", headers=api.admin)
    assert not_yet.status_code == 403
    assert "provisioned" in not_yet.json()["error"]["message"]
    bad_url = api.client.post(
        "/stores/dup-shop/provision",
        json={"mode": "connect_existing", "url": "ftp://x"},
        headers=api.admin,
    )
    assert bad_url.status_code == 422
    api.provisioned_store("full-shop")
    missing_fields = api.client.post(
        "/stores/full-shop/orders", json={"email": "a@b.c", "items": []}, headers=api.admin
    )
    assert missing_fields.status_code == 422
    ghost = api.client.post(
        "/stores/full-shop/orders",
        json={"email": "a@b.c", "items": [{"product_id": str(uuid.uuid4()), "quantity": 1}]},
        headers=api.admin,
    )
    assert ghost.status_code == 404  # a product that does not exist
    assert "unknown product" in ghost.json()["error"]["message"]


def test_suspended_store_is_refused_until_resumed(api: Api) -> None:
    api.provisioned_store("sleepy")
    assert api.client.post("/stores/sleepy/suspend", headers=api.admin).status_code == 200
    refused = api.client.get("/stores/sleepy/products", headers=api.admin)
    assert refused.status_code == 403
    assert "suspended" in refused.json()["error"]["message"]
    assert api.client.get("/stores/sleepy", headers=api.admin).json()["status"] == "suspended"
    assert api.client.post("/stores/sleepy/resume", headers=api.admin).status_code == 200
    assert api.client.get("/stores/sleepy/products", headers=api.admin).status_code == 200


def test_plan_limit_refuses_the_product_past_it(api: Api) -> None:
    api.provisioned_store("tiny")
    with api.platform.sessions.begin() as session:
        session.execute(update(Subscription).values(max_products=2))
    for n in range(2):
        made = api.client.post(
            "/stores/tiny/products", json={"sku": f"S{n}", "name": "x"}, headers=api.admin
        )
        assert made.status_code == 201
    third = api.client.post(
        "/stores/tiny/products", json={"sku": "S3", "name": "x"}, headers=api.admin
    )
    assert third.status_code == 403
    assert "allows 2 products" in third.json()["error"]["message"]
    assert (
        api.client.patch("/stores/tiny", json={"plan": "starter"}, headers=api.admin).status_code
        == 200
    )
    assert (
        api.client.post(
            "/stores/tiny/products", json={"sku": "S3", "name": "x"}, headers=api.admin
        ).status_code
        == 201
    )


def test_openapi_is_served(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert "/stores/{store_ref}/provision" in spec["paths"]
    assert "/provision/{job_id}" in spec["paths"]


def test_each_store_is_a_customer_of_the_platform_app(api: Api) -> None:
    created = api.client.post(
        "/stores", json={"slug": "billed", "name": "Billed"}, headers=api.admin
    ).json()
    assert created["billing_customer_id"] is not None
    with api.platform.billing_sessions() as billing:
        customer = billing.get(BillingCustomer, uuid.UUID(created["billing_customer_id"]))
        assert customer is not None
        assert customer.app_id == "platform"
        assert customer.external_customer_id == created["id"]
    with api.platform.master_engine.connect() as conn:
        tables = conn.scalars(text("SELECT name FROM sqlite_master WHERE type='table'")).all()
    assert "billing_customers" not in tables  # the link is in the application, not a key


def test_requests_that_write_succeed_while_a_worker_keeps_writing_master(api: Api) -> None:
    """SQLite master: a request that read before writing used to fail with "database is
    locked" when a worker committed in between (seen creating stores while others were being
    provisioned)."""
    assert api.provisioned_store("busy-shop")["job"]["status"] == "completed"
    # What a provisioning worker's steps do to master meanwhile:
    busy = update(ApiKey).values(name=ApiKey.name)
    with busy_writer(api.platform.settings.master_url, busy) as writes:
        statuses = [
            api.client.post(
                "/stores", json={"slug": f"busy-{i}", "name": f"Busy {i}"}, headers=api.admin
            ).status_code
            for i in range(25)
        ]
        # Tenant calls read master, then log themselves there: reads and writes alike.
        calls = [
            api.client.get("/stores/busy-shop/products", headers=api.admin).status_code
            for _ in range(15)
        ] + [
            api.client.post(
                "/stores/busy-shop/products",
                json={"sku": f"B{i}", "name": f"Busy {i}"},
                headers=api.admin,
            ).status_code
            for i in range(2)
        ]
        listed = api.client.get("/stores?limit=100", headers=api.admin)
        assert writes() > 25  # the worker really wrote throughout
    assert statuses == [201] * 25
    assert calls == [200] * 15 + [201] * 2
    with api.platform.sessions() as session:
        logged = session.scalar(
            select(func.count()).select_from(ApiUsageLog).where(ApiUsageLog.status_code < 300)
        )
    assert logged == 17
    slugs = {s["slug"] for s in listed.json()["items"]}
    assert {f"busy-{i}" for i in range(25)} <= slugs


@pytest.fixture
def api_with_a_short_busy_timeout(
    settings: Settings, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Api]:
    """The API with SQLite's busy timeout at 1 s (10 s by default), so a lock held past it
    takes the test 1 s."""
    monkeypatch.setenv(BUSY_TIMEOUT_ENV, "1000")
    with open_api(settings, platform) as opened:
        yield opened


def test_a_write_lock_held_past_the_busy_timeout_is_a_503_to_retry(
    api_with_a_short_busy_timeout: Api,
) -> None:
    """SQLite master locked by another writer for longer than the busy timeout: the request
    is refused with 503 and Retry-After, changes nothing, and succeeds when retried."""
    api = api_with_a_short_busy_timeout
    holder = sqlite3.connect(str(api.platform.settings.master_url.database), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        refused = api.client.post(
            "/stores", json={"slug": "locked-out", "name": "Locked"}, headers=api.admin
        )
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    error = refused.json()["error"]
    assert error["type"] == "DatabaseBusy"
    assert "changed nothing" in error["message"]
    assert api.client.get("/stores/locked-out", headers=api.admin).status_code == 404
    retried = api.client.post(
        "/stores", json={"slug": "locked-out", "name": "Locked"}, headers=api.admin
    )
    assert retried.status_code == 201, retried.text


def test_a_writer_queue_held_past_the_busy_timeout_is_a_503_to_retry(
    api_with_a_short_busy_timeout: Api,
) -> None:
    """Master's writer queue (not SQLite's own lock) held by another writer of tenantry for
    longer than the busy timeout: the same 503 to retry, not an unexpected error."""
    api = api_with_a_short_busy_timeout
    held = sqlite_writers.acquire(Path(str(api.platform.settings.master_url.database)), 1000)
    try:
        refused = api.client.post(
            "/stores", json={"slug": "queued-out", "name": "Queued"}, headers=api.admin
        )
    finally:
        sqlite_writers.release(held)
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["type"] == "DatabaseBusy"
    assert api.client.get("/stores/queued-out", headers=api.admin).status_code == 404
    retried = api.client.post(
        "/stores", json={"slug": "queued-out", "name": "Queued"}, headers=api.admin
    )
    assert retried.status_code == 201, retried.text


def test_a_keys_last_use_is_recorded_at_most_once_a_minute(api: Api) -> None:
    def last_used() -> object:
        with api.platform.sessions() as session:
            return session.scalar(select(ApiKey.last_used_at).where(ApiKey.name == "admin"))

    assert last_used() is None
    assert api.client.get("/stores", headers=api.admin).status_code == 200
    first = last_used()
    assert first is not None
    assert (
        api.client.post(
            "/stores", json={"slug": "used-twice", "name": "Used"}, headers=api.admin
        ).status_code
        == 201
    )
    assert last_used() == first  # the second request within the minute wrote nothing
