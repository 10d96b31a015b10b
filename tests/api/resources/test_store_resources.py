"""The default store schema's tables over HTTP, generated from their declarations: CRUD,
keyset and offset pages, filters, integrity errors naming the field, and the tenant API's
rules (store isolation, suspension, read-only keys, plan limits). Store databases on
SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import update

from tenantry.db.master.models import Subscription
from tenantry.services import apikeys, stores
from tests.api.conftest import Api
from tests.api.resources.conftest import ShopFactory


def _post(api: Api, slug: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    made = api.client.post(f"/stores/{slug}/{path}", json=body, headers=api.admin)
    assert made.status_code == 201, made.text
    result: dict[str, Any] = made.json()
    return result


def _product(api: Api, slug: str, sku: str = "MUG-1") -> dict[str, Any]:
    return _post(api, slug, "products", {"sku": sku, "name": "Mug", "price_minor": 1250})


def test_rows_of_several_resources_are_created_read_changed_and_deleted(
    api: Api, new_shop: ShopFactory
) -> None:
    shop = new_shop("a")
    base, h = f"/stores/{shop}", api.admin
    product = _product(api, shop)
    hats = _post(api, shop, "categories", {"slug": "hats", "name": "Hats"})
    caps = _post(api, shop, "categories", {"slug": "caps", "name": "Caps", "parent_id": hats["id"]})
    assert caps["parent_id"] == hats["id"]
    assert caps["position"] == 0
    assert caps["is_active"]
    link = _post(
        api, shop, "product-categories", {"product_id": product["id"], "category_id": caps["id"]}
    )
    customer = _post(api, shop, "customers", {"email": "ann@example.com", "first_name": "Ann"})
    _post(api, shop, "settings", {"key": "theme", "value": {"colour": "teal", "dark": True}})
    _post(api, shop, "inventory", {"product_id": product["id"], "quantity": 7})
    # Left out, a column takes its default; null is a JSON value where the column holds JSON.
    assert _post(api, shop, "attributes", {"code": "size", "name": "Size"})["options"] == []
    assert _post(api, shop, "settings", {"key": "banner", "value": None})["value"] is None

    got = api.client.get(f"{base}/customers/{customer['id']}", headers=h)
    assert got.status_code == 200
    assert got.json()["email"] == "ann@example.com"
    assert api.client.get(f"{base}/settings/theme", headers=h).json()["value"] == {
        "colour": "teal",
        "dark": True,
    }
    item = f"{base}/product-categories/{product['id']}/{caps['id']}"
    assert api.client.get(item, headers=h).json() == link

    changed = api.client.patch(
        f"{base}/customers/{customer['id']}", json={"last_name": "Lee"}, headers=h
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["first_name"], changed.json()["last_name"]) == ("Ann", "Lee")
    moved = api.client.patch(item, json={"position": 3}, headers=h)
    assert moved.status_code == 200
    assert moved.json()["position"] == 3
    assert (
        api.client.get(f"{base}/customers/{customer['id']}", headers=h).json()["last_name"] == "Lee"
    )

    # Deleting a category takes its product links with it (the schema's ON DELETE CASCADE)
    # and leaves its children without a parent (SET NULL).
    assert api.client.delete(f"{base}/categories/{hats['id']}", headers=h).status_code == 204
    assert api.client.get(f"{base}/categories/{caps['id']}", headers=h).json()["parent_id"] is None
    assert api.client.delete(f"{base}/categories/{caps['id']}", headers=h).status_code == 204
    assert api.client.get(item, headers=h).status_code == 404
    assert api.client.get(f"{base}/product-categories", headers=h).json()["items"] == []
    gone = api.client.get(f"{base}/categories/{caps['id']}", headers=h)
    assert gone.status_code == 404
    assert gone.json()["error"]["type"] == "NotFound"
    # The product itself is untouched, and still served by its own routes.
    assert api.client.get(f"{base}/products/{product['id']}", headers=h).status_code == 200


def test_lists_page_by_cursor_and_offset_and_filter(api: Api, new_shop: ShopFactory) -> None:
    shop = new_shop("a")
    base, h = f"/stores/{shop}", api.admin
    emails = {f"c{n}@example.com" for n in range(5)}
    for email in sorted(emails):
        _post(api, shop, "customers", {"email": email})

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, **({"after": cursor} if cursor else {})}
        page = api.client.get(f"{base}/customers", params=params, headers=h).json()
        seen += [c["id"] for c in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == 5
    assert len(set(seen)) == 5
    everything = api.client.get(f"{base}/customers", headers=h).json()
    assert [c["id"] for c in everything["items"]] == seen
    assert everything["next_cursor"] is None
    last = api.client.get(f"{base}/customers", params={"offset": 4}, headers=h).json()
    assert [c["id"] for c in last["items"]] == seen[4:]

    one = api.client.get(f"{base}/customers", params={"email": "c3@example.com"}, headers=h)
    assert [c["email"] for c in one.json()["items"]] == ["c3@example.com"]

    mug, hat = _product(api, shop, "MUG"), _product(api, shop, "HAT")
    _post(api, shop, "prices", {"product_id": hat["id"], "amount_minor": 900, "currency": "EUR"})
    prices = api.client.get(f"{base}/prices", params={"product_id": hat["id"]}, headers=h).json()
    assert sorted((p["currency"], p["amount_minor"]) for p in prices["items"]) == [
        ("EUR", 900),
        ("USD", 1250),
    ]
    euros = api.client.get(f"{base}/prices", params={"currency": "EUR"}, headers=h).json()
    assert [p["product_id"] for p in euros["items"]] == [hat["id"]]
    assert mug["id"] not in {p["product_id"] for p in prices["items"]}

    with api.platform.sessions() as session:
        calls_before = stores.get_store(session, shop).api_calls_month
    for _ in range(3):
        assert api.client.get(f"{base}/customers", headers=h).status_code == 200
    with api.platform.sessions() as session:  # every call is counted, as on products
        assert stores.get_store(session, shop).api_calls_month == calls_before + 3

    bad = api.client.get(f"{base}/customers", params={"after": "bm90LWEtY3Vyc29y"}, headers=h)
    assert bad.status_code == 422
    assert "after" in bad.json()["error"]["message"]


def test_bad_references_and_duplicates_name_the_field(api: Api, new_shop: ShopFactory) -> None:
    shop = new_shop("a")
    base, h = f"/stores/{shop}", api.admin
    product = _product(api, shop)
    unknown = "00000000-0000-4000-8000-000000000001"

    dangling = api.client.post(
        f"{base}/product-categories",
        json={"product_id": product["id"], "category_id": unknown},
        headers=h,
    )
    assert dangling.status_code == 422, dangling.text
    assert dangling.json()["error"]["message"].startswith("category_id:")
    orphan = api.client.post(
        f"{base}/inventory", json={"product_id": unknown, "quantity": 1}, headers=h
    )
    assert orphan.status_code == 422
    assert "product_id" in orphan.json()["error"]["message"]
    assert api.client.get(f"{base}/inventory", headers=h).json()["items"] == []

    too_early = api.client.post(
        f"{base}/prices",
        json={"product_id": product["id"], "amount_minor": 1, "starts_at": "0999-12-31T00:00:00Z"},
        headers=h,
    )
    assert too_early.status_code == 422
    assert "starts_at" in too_early.json()["error"]["message"]
    ann = _post(api, shop, "customers", {"email": "ann@example.com"})
    twice = api.client.post(f"{base}/customers", json={"email": "ann@example.com"}, headers=h)
    assert twice.status_code == 409
    assert twice.json()["error"]["message"].startswith("email:")
    bob = _post(api, shop, "customers", {"email": "bob@example.com"})
    clash = api.client.patch(
        f"{base}/customers/{bob['id']}", json={"email": ann["email"]}, headers=h
    )
    assert clash.status_code == 409
    assert "email" in clash.json()["error"]["message"]
    # Its own value again is no duplicate.
    same = api.client.patch(
        f"{base}/customers/{bob['id']}", json={"email": bob["email"]}, headers=h
    )
    assert same.status_code == 200
    _post(api, shop, "inventory", {"product_id": product["id"], "location": "main"})
    again = api.client.post(
        f"{base}/inventory", json={"product_id": product["id"], "location": "main"}, headers=h
    )
    assert again.status_code == 409
    assert "product_id, location" in again.json()["error"]["message"]
    emails = [c["email"] for c in api.client.get(f"{base}/customers", headers=h).json()["items"]]
    assert sorted(emails) == ["ann@example.com", "bob@example.com"]


def test_another_stores_rows_are_never_visible(api: Api, new_shop: ShopFactory) -> None:
    first, second = new_shop("a"), new_shop("b")
    page = _post(api, first, "cms-pages", {"slug": "about", "title": "About us"})
    _post(api, second, "cms-pages", {"slug": "faq", "title": "FAQ"})

    listed = api.client.get(f"/stores/{second}/cms-pages", headers=api.admin).json()
    assert [p["slug"] for p in listed["items"]] == ["faq"]
    other = api.client.get(f"/stores/{second}/cms-pages/{page['id']}", headers=api.admin)
    assert other.status_code == 404
    second_key = api.store_key(second)
    refused = api.client.get(f"/stores/{first}/cms-pages", headers=second_key)
    assert refused.status_code == 404
    deleted = api.client.delete(f"/stores/{first}/cms-pages/{page['id']}", headers=second_key)
    assert deleted.status_code == 404
    own = api.client.get(f"/stores/{second}/cms-pages", headers=second_key).json()
    assert [p["slug"] for p in own["items"]] == ["faq"]
    assert (
        api.client.get(f"/stores/{first}/cms-pages/{page['id']}", headers=api.admin).json() == page
    )


def test_a_suspended_store_is_refused(api: Api, new_shop: ShopFactory) -> None:
    shop = new_shop("a")
    _post(api, shop, "discounts", {"code": "SPRING", "value": 1000})
    suspended = api.client.post(f"/stores/{shop}/suspend", headers=api.admin)
    assert suspended.status_code == 200, suspended.text
    key = api.store_key(shop)
    for method, body in (("GET", None), ("POST", {"code": "SUMMER", "value": 500})):
        answer = api.client.request(method, f"/stores/{shop}/discounts", json=body, headers=key)
        assert answer.status_code == 403, answer.text
    assert api.client.post(f"/stores/{shop}/resume", headers=api.admin).status_code == 200
    codes = [
        d["code"] for d in api.client.get(f"/stores/{shop}/discounts", headers=key).json()["items"]
    ]
    assert codes == ["SPRING"]


def test_a_read_only_key_reads_but_never_writes(api: Api, new_shop: ShopFactory) -> None:
    shop = new_shop("a")
    base = f"/stores/{shop}"
    attribute = _post(api, shop, "attributes", {"code": "colour", "name": "Colour"})
    with api.platform.sessions.begin() as session:
        viewer = apikeys.create_key(
            session,
            name="viewer",
            scope=apikeys.Scope.STORE,
            store=stores.get_store(session, shop),
            read_only=True,
            actor="cli:test",
        )
    key = api.as_key(viewer.plaintext)
    item = f"{base}/attributes/{attribute['id']}"
    assert api.client.get(item, headers=key).json() == attribute
    writes = [
        api.client.post(f"{base}/attributes", json={"code": "size", "name": "Size"}, headers=key),
        api.client.patch(item, json={"name": "Color"}, headers=key),
        api.client.delete(item, headers=key),
    ]
    assert [w.status_code for w in writes] == [403, 403, 403], [w.text for w in writes]
    assert api.client.get(f"{base}/attributes", headers=api.admin).json()["items"] == [attribute]


def test_plan_limits_and_order_lines_stay_as_they_were(api: Api, new_shop: ShopFactory) -> None:
    shop = new_shop("a")
    base, h = f"/stores/{shop}", api.admin
    mug = _product(api, shop)
    order = _post(
        api,
        shop,
        "orders",
        {"email": "a@example.com", "items": [{"product_id": mug["id"], "quantity": 2}]},
    )
    assert api.client.get(f"{base}/orders/{order['id']}", headers=h).json() == order
    lines = api.client.get(f"{base}/order-items", params={"order_id": order["id"]}, headers=h)
    assert [(i["sku"], i["quantity"], i["total_minor"]) for i in lines.json()["items"]] == [
        ("MUG-1", 2, 2500)
    ]
    # Order lines are read-only: the order's totals always match them.
    line = lines.json()["items"][0]["id"]
    assert api.client.delete(f"{base}/order-items/{line}", headers=h).status_code == 405
    assert api.client.post(f"{base}/order-items", json={}, headers=h).status_code == 405

    with api.platform.sessions.begin() as session:
        store_id = stores.get_store(session, shop).id
        session.execute(
            update(Subscription).where(Subscription.store_id == store_id).values(max_products=1)
        )
    refused = api.client.post(f"{base}/products", json={"sku": "HAT", "name": "Hat"}, headers=h)
    assert refused.status_code == 403
    assert "1 products" in refused.json()["error"]["message"]


def test_concurrent_duplicates_give_one_row_and_conflicts(api: Api, new_shop: ShopFactory) -> None:
    shop = new_shop("a")
    url = f"/stores/{shop}/customers"

    def attempt(_: int) -> int:
        answer = api.client.post(url, json={"email": "same@example.com"}, headers=api.admin)
        return int(answer.status_code)

    with ThreadPoolExecutor(max_workers=6) as pool:
        codes = sorted(pool.map(attempt, range(6)))
    # The checks before the write see no row; the database's unique index then refuses the
    # late ones, which are a 409 as well, never a 500.
    assert codes == [201] + [409] * 5, codes
    rows = api.client.get(url, headers=api.admin).json()["items"]
    assert [c["email"] for c in rows] == ["same@example.com"]
