"""The resolver remembers answers for a short ttl, so a resolved request reads master once
(to open its session); suspensions still take effect: at once through ``app.stores``, within
the ttl when made elsewhere. (No ``from __future__ import annotations``: FastAPI must see the
route-local ``Annotated`` aliases themselves.)"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from tenantry import ByHeader, Product, ResolvedStore, TenantMiddleware, Tenantry
from tenantry.services import stores
from tenantry.tenancy.resolution_cache import ResolutionCache
from tests.platform_fixtures import platform, settings
from tests.tenantry_fixtures import app, open_store

__all__ = ["app", "platform", "settings"]


def web_of(app: Tenantry) -> TestClient:
    web = FastAPI()
    web.add_middleware(TenantMiddleware, resolver=app.resolver(ByHeader()))
    tenant = Annotated[Session, Depends(app.current_tenant_session)]
    store = Annotated[ResolvedStore, Depends(app.current_store)]

    @web.get("/whoami")
    def whoami(resolved: store) -> str:
        return resolved.slug

    @web.get("/skus")
    def skus(session: tenant) -> list[str]:
        return list(session.scalars(select(Product.sku)))

    return TestClient(web)


@contextmanager
def master_statements(app: Tenantry) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(app.platform.master_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(app.platform.master_engine, "before_cursor_execute", record)


def test_a_resolved_request_reads_master_only_to_open_its_session(app: Tenantry) -> None:
    open_store(app, "cached")
    client = web_of(app)
    shop = {"X-Tenant": "cached"}
    assert client.get("/skus", headers=shop).json() == []  # resolved and remembered
    store_id = app.stores.get("cached").id
    with master_statements(app) as opening, app.tenant_session(store_id):
        pass
    with master_statements(app) as warm:
        assert client.get("/skus", headers=shop).status_code == 200
    assert len(warm) == len(opening) > 0

    app.resolution_cache.ttl = 0  # off: every request resolves again
    with master_statements(app) as cold:
        assert client.get("/skus", headers=shop).status_code == 200
    assert len(cold) > len(warm)


def test_a_suspension_is_seen_at_once_here_and_within_the_ttl_elsewhere(app: Tenantry) -> None:
    open_store(app, "paused")
    app.resolution_cache.ttl = 0.5
    client = web_of(app)
    shop = {"X-Tenant": "paused"}
    assert client.get("/whoami", headers=shop).json() == "paused"

    with app.master_session() as master:  # as another process would: no cache to clear
        stores.suspend_store(master, stores.get_store(master, "paused"), reason="", actor="t")
    assert client.get("/skus", headers=shop).status_code == 403  # sessions read master
    assert client.get("/whoami", headers=shop).status_code == 200  # remembered, < ttl
    time.sleep(0.6)
    assert client.get("/whoami", headers=shop).status_code == 403

    app.stores.resume("paused")
    assert client.get("/whoami", headers=shop).status_code == 200
    app.stores.suspend("paused")  # through this app: forgotten at once
    assert client.get("/whoami", headers=shop).status_code == 403


def test_a_negative_ttl_is_refused() -> None:
    with pytest.raises(ValueError, match="0 or more seconds"):
        ResolutionCache(-1)
