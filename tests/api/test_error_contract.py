"""The HTTP error contract: bounded input, body limits, usage log statuses, 429/503 with
Retry-After, strict types, the 405 Allow header and an OpenAPI document naming every error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.requests import Request

from tenantry.api.errors import error_response
from tenantry.api.fields import INT64_MAX
from tenantry.db.master.models import ApiUsageLog, Store
from tenantry.services import stores
from tenantry.services.provisioning import tenant_sqlite_path
from tests.api.conftest import Api

INT64 = 2**63

LIST_ROUTES = [
    "/stores",
    "/stores/shop/products",
    "/stores/shop/orders",
]


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert set(body) == {"type", "message", "hint"}
    return body


@pytest.fixture
def shop(api: Api) -> dict[str, str]:
    """A provisioned SQLite store ``shop`` and its store key."""
    api.provisioned_store("shop")
    return api.store_key("shop")


def test_integers_past_their_columns_are_a_422_on_every_list_route(
    api: Api, shop: dict[str, str]
) -> None:
    for route in LIST_ROUTES:
        for offset in (INT64, INT64 * 4, -1):
            response = api.client.get(f"{route}?offset={offset}", headers=api.admin)
            assert "offset" in _error(response, 422)["message"]
    ok = api.client.get(f"/stores/shop/products?offset={INT64_MAX}", headers=shop)
    assert ok.status_code == 200, ok.text
    assert ok.json() == []


def test_billing_list_routes_bound_offsets(api: Api) -> None:
    headers = {**api.admin, "X-App-Id": "acme"}
    for route in ("/billing/customers", "/billing/subscriptions", "/billing/invoices"):
        response = api.client.get(f"{route}?offset={INT64}", headers=headers)
        assert "offset" in _error(response, 422)["message"]


def test_prices_and_order_totals_never_overflow(api: Api, shop: dict[str, str]) -> None:
    too_big = api.client.post(
        "/stores/shop/products", json={"sku": "A", "name": "A", "price_minor": INT64}, headers=shop
    )
    assert "price_minor" in _error(too_big, 422)["message"]
    dear = api.client.post(
        "/stores/shop/products",
        json={"sku": "B", "name": "B", "price_minor": INT64_MAX},
        headers=shop,
    )
    assert dear.status_code == 201, dear.text
    order = api.client.post(
        "/stores/shop/orders",
        json={"email": "a@b.co", "items": [{"product_id": dear.json()["id"], "quantity": 3}]},
        headers=shop,
    )
    assert "total" in _error(order, 422)["message"]
    # The connection survived: the store still answers.
    assert api.client.get("/stores/shop/products", headers=shop).status_code == 200


@pytest.mark.parametrize("value", [False, True, "1", 1.5])
def test_integers_are_strict(api: Api, shop: dict[str, str], value: object) -> None:
    response = api.client.post(
        "/stores/shop/products", json={"sku": "S", "name": "S", "price_minor": value}, headers=shop
    )
    assert "price_minor" in _error(response, 422)["message"]


def test_an_integral_number_is_an_integer(api: Api, shop: dict[str, str]) -> None:
    # JSON Schema's "integer" includes 250.0; the OpenAPI document and the server agree.
    response = api.client.post(
        "/stores/shop/products", json={"sku": "F", "name": "F", "price_minor": 250.0}, headers=shop
    )
    assert response.status_code == 201, response.text
    assert response.json()["price_minor"] == 250


def test_usage_log_records_the_status_the_client_got(
    api: Api, shop: dict[str, str], platform: Any
) -> None:
    invalid = api.client.post("/stores/shop/products", json={"sku": ""}, headers=shop)
    assert invalid.status_code == 422
    missing = api.client.get(
        "/stores/shop/products/00000000-0000-0000-0000-000000000000", headers=shop
    )
    assert missing.status_code == 404
    with platform.sessions() as session:
        logged = {
            (row.method, row.status_code)
            for row in session.scalars(select(ApiUsageLog).order_by(ApiUsageLog.created_at))
        }
    assert ("POST", 422) in logged
    assert ("GET", 404) in logged
    assert not any(code >= 500 for _, code in logged)


def test_bodies_over_the_limit_are_a_413_with_the_error_body(api: Api) -> None:
    big = b'{"slug": "big-shop", "name": "' + b"x" * (1024 * 1024) + b'"}'
    declared = api.client.post(
        "/stores",
        content=big,
        headers={**api.admin, "content-type": "application/json"},
    )
    assert _error(declared, 413)["type"] == "PayloadTooLarge"

    def chunks() -> Any:
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    streamed = api.client.post(
        "/billing/customers",
        content=chunks(),
        headers={**api.admin, "X-App-Id": "acme", "content-type": "application/json"},
    )
    assert _error(streamed, 413)["type"] == "PayloadTooLarge"


def test_strings_and_metadata_are_bounded(api: Api, shop: dict[str, str]) -> None:
    long_text = api.client.post(
        "/stores/shop/products",
        json={"sku": "L", "name": "L", "description": "x" * 10_001},
        headers=shop,
    )
    assert "description" in _error(long_text, 422)["message"]
    headers = {**api.admin, "X-App-Id": "acme"}
    for metadata in (
        {f"k{i}": "v" for i in range(51)},
        {"k" * 41: "v"},
        {"k": "v" * 501},
        {"k": {"nested": "no"}},
    ):
        response = api.client.post(
            "/billing/customers",
            json={"external_customer_id": "c1", "metadata": metadata},
            headers=headers,
        )
        assert "metadata" in _error(response, 422)["message"]


def test_exhausted_quota_is_a_429_with_retry_after_and_refusals_are_not_counted(
    api: Api, shop: dict[str, str], platform: Any
) -> None:
    with platform.sessions.begin() as session:
        store = stores.get_store(session, "shop")
        subscription = stores.current_subscription(session, store)
        assert subscription is not None
        subscription.max_api_calls_per_month = 1
    assert api.client.get("/stores/shop/products", headers=shop).status_code == 200
    for _ in range(3):
        refused = api.client.get("/stores/shop/products", headers=shop)
        assert _error(refused, 429)["type"] == "QuotaExceeded"
        assert int(refused.headers["Retry-After"]) > 0
    with platform.sessions() as session:
        used = session.scalar(select(Store.api_calls_month).where(Store.slug == "shop"))
    assert used == 1


def test_a_store_database_that_is_down_is_a_503_with_retry_after(
    api: Api, shop: dict[str, str], settings: Any
) -> None:
    assert api.client.get("/stores/shop/products", headers=shop).status_code == 200
    app_platform = api.client.app.state.platform  # type: ignore[attr-defined]
    with app_platform.sessions() as session:
        store = stores.get_store(session, "shop")
        path = Path(tenant_sqlite_path(settings, store))
        store_id = store.id
    app_platform.router.evict(store_id)
    # The file is gone and a directory stands in its place: SQLite cannot open it.
    shutil.move(path, path.with_suffix(".away"))
    path.mkdir()
    down = api.client.get("/stores/shop/products", headers=shop)
    body = _error(down, 503)
    assert int(down.headers["Retry-After"]) > 0
    assert str(path) not in body["message"]


def test_no_pooled_connection_free_in_time_is_a_503_to_retry(tmp_path: Path) -> None:
    """A request that waited past the pool's timeout for a connection (every one in use by
    others, as under a burst on a server database) is answered 503 with Retry-After, not
    as an unexpected error."""
    engine = create_engine(
        f"sqlite:///{tmp_path / 'p.db'}", pool_size=1, max_overflow=0, pool_timeout=0.05
    )
    try:
        with engine.connect(), pytest.raises(PoolTimeout) as waited:
            engine.connect()
    finally:
        engine.dispose()
    request = Request({"type": "http", "method": "GET", "path": "/stores", "headers": []})
    response = error_response(request, waited.value)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    body = json.loads(bytes(response.body))["error"]
    assert body["type"] == "DatabaseBusy"
    assert "changed nothing" in body["message"]


def test_a_405_allows_every_method_of_the_path(api: Api) -> None:
    response = api.client.delete("/stores", headers=api.admin)
    assert _error(response, 405)["type"] == "MethodNotAllowed"
    allowed = {m.strip() for m in response.headers["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert "GET" in (_error(response, 405)["hint"] or "")


def test_a_body_that_is_not_json_or_not_an_object_is_named_as_such(api: Api) -> None:
    cut = api.client.post(
        "/stores", content=b'{"slug":', headers={**api.admin, "content-type": "application/json"}
    )
    assert "body: not valid JSON (at character 8)" in _error(cut, 422)["message"]
    listed = api.client.post("/stores", json=[1, 2], headers=api.admin)
    assert "body: " in _error(listed, 422)["message"]


def test_openapi_documents_every_error_with_the_one_model(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert set(schemas["ErrorBody"]["properties"]) == {"error"}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            errors = {code: r for code, r in responses.items() if int(code) >= 400}
            for code, response in errors.items():
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, code)
                if code in ("429", "503"):
                    assert "Retry-After" in response["headers"], (path, code)
            if path in ("/health", "/ready") or path.startswith("/webhooks"):
                continue
            # Every route behind an API key documents 401 and 503 (its database).
            assert {"401", "503"} <= set(errors), (method, path)
            if "requestBody" in operation:
                assert {"413", "422"} <= set(errors), (method, path)
            if path.startswith(("/stores/{store_ref}/products", "/stores/{store_ref}/orders")):
                assert {"403", "404", "429"} <= set(errors), (method, path)
