"""A viewer's session and a read-only admin key over HTTP: every GET works, every write of
each kind is a 403 that changes nothing in master, billing or the store's database.

The kinds: stores (create, update), billing (a customer), tenant data (a product),
provisioning, backups, database servers, API keys (create, revoke) and operations (cancel).
"Nothing changed" is every row of every table of the three databases, compared before and
after, leaving out only the bookkeeping a request writes by itself (audit entries, the usage
log and counters, last use and login, sessions).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, select

from tenantry.db.master.models import OperationKind, UserRole
from tenantry.operations.kit import OperationKit
from tenantry.services import stores
from tenantry.services.permissions import BOOKKEEPING
from tests.api.conftest import Api
from tests.api.users_helpers import add_user, login
from tests.conftest import SERVER_URLS, require_server

#: Columns the requests themselves keep up to date.
BOOKKEEPING_COLUMNS = {"api_calls_month", "last_activity_at", "last_used_at", "last_login_at"}


def _rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    meta = MetaData()
    meta.reflect(engine)
    snapshot: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            if table.name in BOOKKEEPING and BOOKKEEPING[table.name] is None:
                continue
            columns = [c for c in table.columns if c.name not in BOOKKEEPING_COLUMNS]
            if table.name in BOOKKEEPING:
                columns = [c for c in columns if c.name != "updated_at"]
            rows = conn.execute(select(*columns)).all()
            snapshot[table.name] = sorted((tuple(map(repr, r)) for r in rows), key=repr)
    return snapshot


def _everything(api: Api, slug: str) -> dict[str, Any]:
    platform = api.platform
    with platform.sessions() as master:
        store = stores.get_store(master, slug)
        with platform.router.session(master, store) as tenant:
            tenant_engine = tenant.get_bind()
            assert isinstance(tenant_engine, Engine)
            tenant_rows = _rows(tenant_engine)
    return {
        "master": _rows(platform.master_engine),
        "billing": _rows(platform.billing_engine),
        "tenant": tenant_rows,
    }


@pytest.fixture
def shop(api: Api) -> dict[str, Any]:
    """A provisioned store with a product and a billing customer, a queued operation, and
    the headers of a viewer's session and of a read-only admin key."""
    require_server("postgresql")
    api.provisioned_store("ro-shop")
    product = api.client.post(
        "/stores/ro-shop/products", json={"sku": "HAT", "name": "Hat"}, headers=api.admin
    )
    assert product.status_code == 201, product.text
    customer = api.client.post(
        "/billing/customers",
        json={"external_customer_id": "c-1"},
        headers={**api.admin, "X-App-Id": "acme"},
    )
    assert customer.status_code == 201, customer.text
    queued = OperationKit(api.platform.sessions, lease_seconds=30).create(OperationKind.BACKUP)
    made = api.client.post(
        "/api-keys", json={"scope": "admin", "read_only": True, "name": "ro"}, headers=api.admin
    )
    assert made.status_code == 201, made.text
    assert made.json()["read_only"] is True
    add_user(api, "viewer@example.com", UserRole.VIEWER)
    return {
        "viewer": login(api, "viewer@example.com").headers,
        "read-only key": api.as_key(made.json()["key"]),
        "operation": str(queued),
        "admin_prefix": api.admin["Authorization"].split("_")[1],
        "product": product.json()["id"],
    }


WRITES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/stores", {"slug": "ro-new", "name": "New"}),
    ("PATCH", "/stores/ro-shop", {"name": "Changed"}),
    ("POST", "/stores/ro-shop/suspend", None),
    ("POST", "/billing/customers", {"external_customer_id": "c-2"}),
    (
        "POST",
        "/billing/plans",
        {"code": "ro-plan", "name": "RO", "amount_minor": 100, "currency": "USD"},
    ),
    ("POST", "/stores/ro-shop/products", {"sku": "CAP", "name": "Cap"}),
    ("DELETE", "/stores/ro-shop/products/{product}", None),
    ("POST", "/stores/ro-shop/provision", {}),
    ("POST", "/backups", {"db": "store:ro-shop"}),
    ("POST", "/database-servers", {"name": "ro-pg", "url": SERVER_URLS["postgresql"]}),
    ("POST", "/api-keys", {"scope": "admin"}),
    ("DELETE", "/api-keys/{admin_prefix}", None),
    ("POST", "/operations/{operation}/cancel", None),
]
READS = [
    "/auth/me",
    "/stores",
    "/stores/ro-shop",
    "/stores/ro-shop/products",
    "/billing/customers",
    "/backups",
    "/backups/status",
    "/database-servers",
    "/operations",
    "/api-keys",
]


@pytest.mark.parametrize("who", ["viewer", "read-only key"])
def test_a_read_only_principal_reads_everything_and_changes_nothing(
    api: Api, shop: dict[str, Any], who: str
) -> None:
    # An Idempotency-Key must not make a refused billing write leave a stored response behind.
    headers = {**shop[who], "X-App-Id": "acme", "Idempotency-Key": f"ro-{who}"}
    for path in READS:
        answer = api.client.get(path, headers=headers)
        assert answer.status_code == 200, (path, answer.text)
    before = _everything(api, "ro-shop")
    for method, path, body in WRITES:
        url = path.format(**shop)
        answer = api.client.request(method, url, json=body, headers=headers)
        assert answer.status_code == 403, (method, url, answer.text)
        error = answer.json()["error"]
        assert "is read-only" in error["message"], (method, url, error)
        assert "operator" in error["hint"]
    assert _everything(api, "ro-shop") == before
    # The same requests by an admin key do change things (the snapshot can tell).
    changed = api.client.patch("/stores/ro-shop", json={"name": "Changed"}, headers=api.admin)
    assert changed.status_code == 200
    assert _everything(api, "ro-shop") != before
