"""``Depends(app.current_tenant_session)`` and its async counterpart in a FastAPI app behind
the tenant middleware. (No ``from __future__ import annotations``: FastAPI must see the
route-local ``Annotated`` aliases themselves.)"""

import asyncio
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from tenantry import ByHeader, ByPathPrefix, Product, TenantMiddleware, Tenantry
from tests.platform_fixtures import platform, settings
from tests.tenantry_fixtures import app, open_store

__all__ = ["app", "platform", "settings"]


@pytest.fixture
def shops(app: Tenantry) -> Tenantry:
    open_store(app, "alpha")
    open_store(app, "beta")
    return app


def test_fastapi_dependencies_sync_and_async(shops: Tenantry) -> None:
    web = FastAPI()
    web.add_middleware(TenantMiddleware, resolver=shops.resolver(ByPathPrefix(), ByHeader()))
    sync_session = Annotated[Session, Depends(shops.current_tenant_session)]
    async_session = Annotated[AsyncSession, Depends(shops.current_tenant_async_session)]

    @web.post("/sync/{sku}")
    def add_sync(sku: str, session: sync_session) -> str:
        session.add(Product(sku=sku, slug=sku.lower(), name=sku))
        return sku

    @web.post("/async/{sku}")
    async def add_async(sku: str, session: async_session) -> str:
        session.add(Product(sku=sku, slug=sku.lower(), name=sku))
        return sku

    @web.get("/skus")
    async def skus(session: async_session) -> list[str]:
        return list((await session.scalars(select(Product.sku).order_by(Product.sku))).all())

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            out = [
                await client.post("/sync/S1", headers={"X-Tenant": "alpha"}),
                await client.post("/async/A1", headers={"X-Tenant": "alpha"}),
                await client.post("/async/B1", headers={"X-Tenant": "beta"}),
                await client.get("/skus", headers={"X-Tenant": "alpha"}),
                await client.get("/skus", headers={"X-Tenant": "beta"}),
                await client.get("/t/beta/skus"),
            ]
            await shops.dispose_async_engines()
            return out

    responses = asyncio.run(run())
    assert [r.status_code for r in responses[:3]] == [200, 200, 200]
    assert responses[3].json() == ["A1", "S1"]
    assert responses[4].json() == ["B1"]
    assert responses[5].json() == ["B1"]  # /t/beta/skus routed to /skus


def test_blocked_writes_and_plan_limits_answer_as_the_api_does(shops: Tenantry) -> None:
    from datetime import timedelta

    from fastapi.testclient import TestClient

    from tenantry.db.master.models import Subscription
    from tenantry.db.types import utcnow
    from tenantry.services.write_blocks import block_writes, lift_block

    web = FastAPI()
    web.add_middleware(TenantMiddleware, resolver=shops.resolver(ByHeader()))
    sync_session = Annotated[Session, Depends(shops.current_tenant_session)]
    async_session = Annotated[AsyncSession, Depends(shops.current_tenant_async_session)]

    @web.post("/sync/{sku}")
    def add_sync(sku: str, session: sync_session) -> str:
        session.add(Product(sku=sku, slug=sku.lower(), name=sku))
        session.flush()
        return sku

    @web.post("/async/{sku}")
    async def add_async(sku: str, session: async_session) -> str:
        session.add(Product(sku=sku, slug=sku.lower(), name=sku))
        await session.flush()
        return sku

    @web.get("/skus")
    def skus(session: sync_session) -> list[str]:
        return sorted(session.scalars(select(Product.sku)))

    alpha = {"X-Tenant": "alpha"}
    store_id = shops.stores.get("alpha").id
    reason = "store is being restored from a backup"
    with shops.master_session() as master:
        block_writes(master, store_id, reason, utcnow() + timedelta(seconds=20))
    with TestClient(web) as client:
        for path in ("/sync/B1", "/async/B2"):
            refused = client.post(path, headers=alpha)
            assert refused.status_code == 503, refused.text
            assert 1 <= int(refused.headers["Retry-After"]) <= 20
            assert refused.json()["detail"]["type"] == "WritesBlocked"
        assert client.get("/skus", headers=alpha).json() == []
        with shops.master_session() as master:
            lift_block(master, store_id, reason)
            master.query(Subscription).filter_by(store_id=store_id).update({"max_products": 1})
        assert client.post("/sync/S1", headers=alpha).status_code == 200
        for path in ("/sync/S2", "/async/S3"):
            over = client.post(path, headers=alpha)
            assert over.status_code == 403, over.text
            assert "allows 1 products" in over.json()["detail"]["message"]
        assert client.get("/skus", headers=alpha).json() == ["S1"]
