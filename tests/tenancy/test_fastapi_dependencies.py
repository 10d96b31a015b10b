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
