"""A ``Tenantry`` on a fresh installation, provisioning in-process, and stores made through
it on SQLite or on the local PostgreSQL server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tenantry import Tenantry
from tenantry.db.tenant.store.models import Product
from tenantry.runtime import Platform
from tests.conftest import require_server


@pytest.fixture
def app(platform: Platform) -> Iterator[Tenantry]:
    """The public API over the test's platform; provisioning runs in this process."""
    opened = Tenantry(platform, inline=True)
    yield opened
    opened.close()


@pytest.fixture
def pg_server(platform: Platform) -> Iterator[str]:
    """The local PostgreSQL server registered as ``pg``; the stores' databases and logins
    there are dropped after the test."""
    from tests.services.test_moves import drop_server_databases, register

    require_server("postgresql")
    register(platform, "pg", "postgresql")
    yield "pg"
    drop_server_databases(platform)


def new_slug(label: str) -> str:
    """A store slug no other test uses (store databases on a server are named after it)."""
    return f"{label}-{uuid.uuid4().hex[:6]}"


def open_store(app: Tenantry, slug: str, server: str | None = None) -> None:
    """Create and provision store ``slug`` through the public API."""
    app.stores.create(slug, slug.title())
    handle = app.provision(slug, server=server).wait(timeout=120)
    assert handle.completed, handle.error


def product(sku: str) -> Product:
    """A product row (the default store schema's)."""
    return Product(sku=sku, slug=sku.lower(), name=f"Product {sku}")
