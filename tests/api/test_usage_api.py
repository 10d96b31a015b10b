"""``GET /stores/{slug}/usage``: the days the rollup wrote from a store's API traffic, for the
keys that may read the store; the plan's storage limit over HTTP (403, reads and deletes
still served). Store databases on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import update

from tenantry.db.master.models import Subscription
from tenantry.operations import usage_rollup
from tenantry.services import apikeys, stores
from tenantry.services.usage import BYTES_PER_GB
from tests.api.backend_shop import shop
from tests.api.conftest import Api

__all__ = ["shop"]


def _store_id(api: Api, slug: str) -> uuid.UUID:
    with api.platform.sessions() as session:
        return stores.get_store(session, slug).id


def _read_only_key(api: Api, slug: str) -> dict[str, str]:
    with api.platform.sessions.begin() as session:
        new = apikeys.create_key(
            session,
            name="viewer",
            scope=apikeys.Scope.STORE,
            store=stores.get_store(session, slug),
            read_only=True,
            actor="cli:test",
        )
    return api.as_key(new.plaintext)


def test_usage_shows_the_day_of_the_stores_api_traffic(api: Api, shop: str) -> None:
    key = api.store_key(shop)
    base = f"/stores/{shop}"
    made = [
        api.client.post(
            f"{base}/products", json={"sku": s, "name": s, "price_minor": 700}, headers=key
        )
        for s in ("P1", "P2")
    ]
    assert all(r.status_code == 201 for r in made), [r.text for r in made]
    ordered = api.client.post(
        f"{base}/orders",
        json={"email": "a@b.co", "items": [{"product_id": made[0].json()["id"], "quantity": 3}]},
        headers=key,
    )
    assert ordered.status_code == 201, ordered.text
    assert api.client.get(f"{base}/products", headers=key).status_code == 200
    assert api.client.get(f"{base}/products/{uuid.uuid4()}", headers=key).status_code == 404
    gone = api.client.delete(f"{base}/products/{made[1].json()['id']}", headers=key)
    assert gone.status_code == 204

    usage_rollup.rollup_store(api.platform, _store_id(api, shop))  # what the worker runs

    shown = api.client.get(f"{base}/usage?days=7", headers=_read_only_key(api, shop))
    assert shown.status_code == 200, shown.text
    body = shown.json()
    today = body["days"][-1]
    assert today["date"] == datetime.now(UTC).date().isoformat()
    assert len(body["days"]) == 1
    # P2 was deleted: the store's database no longer holds it, the API log has its delete.
    assert (today["total_products"], today["products_created"]) == (1, 1)
    assert today["products_deleted"] == 1
    assert (today["orders_created"], today["orders_total_value_minor"]) == (1, 2100)
    assert (today["api_calls"], today["api_errors"]) == (6, 1)
    assert body["storage_used_bytes"] == today["storage_total_bytes"] > 0
    assert body["storage_limit_bytes"] == BYTES_PER_GB  # the free plan's 1 GB
    assert body["plan"] == "free"
    assert body["store"] == shop
    assert body["storage_measured_at"] is not None


def test_a_store_over_its_storage_limit_refuses_new_data_only(api: Api, shop: str) -> None:
    key = api.store_key(shop)
    base = f"/stores/{shop}"
    kept = api.client.post(
        f"{base}/products", json={"sku": "K", "name": "K", "price_minor": 1}, headers=key
    )
    assert kept.status_code == 201
    store_id = _store_id(api, shop)
    with api.platform.sessions.begin() as session:
        session.execute(
            update(Subscription).where(Subscription.store_id == store_id).values(max_storage_gb=0)
        )
    usage_rollup.rollup_store(api.platform, store_id)

    refused = api.client.post(f"{base}/products", json={"sku": "X", "name": "X"}, headers=key)
    assert refused.status_code == 403, refused.text
    error = refused.json()["error"]
    assert "free plan allows 0 GB of storage; this store uses" in error["message"]
    assert "Upgrade the store's plan" in error["hint"]
    order = api.client.post(
        f"{base}/orders",
        json={"email": "a@b.co", "items": [{"product_id": kept.json()["id"], "quantity": 1}]},
        headers=key,
    )
    assert order.status_code == 403, order.text
    assert api.client.get(f"{base}/products", headers=key).status_code == 200
    deleted = api.client.delete(f"{base}/products/{kept.json()['id']}", headers=key)
    assert deleted.status_code == 204

    with api.platform.sessions.begin() as session:  # a bigger plan: writes again
        session.execute(
            update(Subscription).where(Subscription.store_id == store_id).values(max_storage_gb=1)
        )
    again = api.client.post(f"{base}/products", json={"sku": "Y", "name": "Y"}, headers=key)
    assert again.status_code == 201, again.text


def test_usage_days_are_bounded_and_other_stores_cannot_see_it(api: Api) -> None:
    for slug in ("seen-shop", "other-shop"):
        api.provisioned_store(slug)
    for bad in ("0", "367", "-3", "many"):
        response = api.client.get(f"/stores/seen-shop/usage?days={bad}", headers=api.admin)
        assert response.status_code == 422, response.text
        assert "days" in response.json()["error"]["message"]
    empty = api.client.get("/stores/seen-shop/usage", headers=api.admin)
    assert empty.status_code == 200
    assert empty.json()["days"] == []
    assert empty.json()["storage_measured_at"] is None
    assert api.client.get("/stores/seen-shop/usage?days=366", headers=api.admin).status_code == 200
    other = api.client.get("/stores/seen-shop/usage", headers=api.store_key("other-shop"))
    assert other.status_code == 404
    assert api.client.get("/stores/seen-shop/usage").status_code == 401
