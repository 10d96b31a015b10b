"""A store front-end API: each store is served on its own host (a verified custom domain,
or ``{slug}.<your domain>``), and lists and adds its products in its own database.

Everything here comes from ``tenantry``'s public API: ``Tenantry`` for sessions, the tenant
middleware for resolution, ``Product`` from the default store schema. (No ``from __future__
import annotations``: FastAPI must see the route-local ``Annotated`` aliases themselves.)
"""

from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tenantry import ByHost, Product, ResolvedStore, TenantMiddleware, Tenantry


class ProductIn(BaseModel):
    """A product to add."""

    sku: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field(min_length=1, max_length=255)


class ProductOut(BaseModel):
    """A product as the storefront shows it."""

    sku: str
    name: str


def create_app(tenantry: Tenantry, *, host_pattern: str | None = None) -> FastAPI:
    """The storefront on ``tenantry``: stores by verified custom domain, then by
    ``host_pattern`` (default ``TENANTRY_TENANT_HOST_PATTERN``, e.g. ``{slug}.shops.test``)."""
    web = FastAPI(title="storefront")
    resolver = tenantry.resolver(ByHost(host_pattern))
    web.add_middleware(TenantMiddleware, resolver=resolver, exempt=("/healthz",))
    StoreSession = Annotated[Session, Depends(tenantry.current_tenant_session)]
    CurrentStore = Annotated[ResolvedStore, Depends(tenantry.current_store)]

    @web.get("/healthz")
    def healthz() -> dict[str, str]:
        """Served without a store."""
        return {"status": "ok"}

    @web.get("/")
    def home(store: CurrentStore) -> dict[str, str]:
        """Which store this host serves."""
        return {"store": store.slug, "name": store.name}

    @web.get("/products", response_model=list[ProductOut])
    def list_products(session: StoreSession) -> list[ProductOut]:
        """This store's products, by SKU."""
        rows = session.scalars(select(Product).order_by(Product.sku))
        return [ProductOut(sku=p.sku, name=p.name) for p in rows]

    @web.post("/products", status_code=201, response_model=ProductOut)
    def add_product(body: ProductIn, session: StoreSession) -> ProductOut:
        """Add a product to this store (409 if its SKU exists)."""
        session.add(Product(sku=body.sku, slug=body.sku.lower(), name=body.name))
        try:
            session.flush()
        except IntegrityError:
            raise HTTPException(409, detail=f"a product {body.sku!r} exists already") from None
        return ProductOut(sku=body.sku, name=body.name)

    return web


def main() -> None:
    """Serve the storefront (``python -m storefront``) on ``$PORT`` (default 8080)."""
    import os

    import uvicorn

    tenantry = Tenantry.from_env()
    try:
        uvicorn.run(create_app(tenantry), host="127.0.0.1", port=int(os.environ.get("PORT", 8080)))
    finally:
        tenantry.close()
