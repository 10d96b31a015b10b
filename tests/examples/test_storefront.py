"""The storefront example, in-process: two stores on different hosts (a verified custom
domain on SQLite, a subdomain on PostgreSQL), each host seeing only its own products."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import httpx

from tenantry import Tenantry
from tests.platform_fixtures import platform, settings
from tests.tenancy.token_server import token_server
from tests.tenantry_fixtures import app, new_slug, open_store, pg_server

__all__ = ["app", "pg_server", "platform", "settings"]

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "storefront"))
from storefront.app import create_app


def calls(web: Any, *requests: tuple[str, str, str, dict[str, str] | None]) -> list[httpx.Response]:
    """Send ``(method, host, path, json)`` requests to the app in order."""

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://any") as client:
            return [
                await client.request(method, path, json=body, headers={"Host": host})
                for method, host, path, body in requests
            ]

    return asyncio.run(run())


def test_each_host_sees_only_its_stores_products(app: Tenantry, pg_server: str) -> None:
    north, south = new_slug("north"), new_slug("south")
    open_store(app, north)  # SQLite
    open_store(app, south, server=pg_server)  # PostgreSQL
    domain = app.stores.add_domain(north, "shop.north.test")
    with token_server({"shop.north.test": domain.token}) as local:
        assert app.stores.verify_domain(north, "shop.north.test", address=local).verified
    web = create_app(app, host_pattern="{slug}.shops.test")
    north_host, south_host = "Shop.North.test:8080", f"{south}.shops.test"

    added = calls(
        web,
        ("POST", north_host, "/products", {"sku": "N-1", "name": "North mug"}),
        ("POST", north_host, "/products", {"sku": "N-2", "name": "North cap"}),
        ("POST", south_host, "/products", {"sku": "S-1", "name": "South mug"}),
        ("POST", south_host, "/products", {"sku": "S-1", "name": "Again"}),
    )
    assert [r.status_code for r in added] == [201, 201, 201, 409]
    home, north_list, south_list = calls(
        web,
        ("GET", north_host, "/", None),
        ("GET", north_host, "/products", None),
        ("GET", south_host, "/products", None),
    )
    assert home.json() == {"store": north, "name": north.title()}
    assert [p["sku"] for p in north_list.json()] == ["N-1", "N-2"]
    assert [p["sku"] for p in south_list.json()] == ["S-1"]

    # Not yet verified, unknown, garbage: refused before any route runs.
    app.stores.add_domain(south, "shop.south.test")
    unverified, unknown, garbage, health = calls(
        web,
        ("GET", "shop.south.test", "/products", None),
        ("GET", "nobody.shops.test", "/products", None),
        ("GET", "not a host", "/products", None),
        ("GET", "not a host", "/healthz", None),
    )
    assert (unverified.status_code, unknown.status_code, garbage.status_code) == (404, 404, 400)
    assert unknown.json()["error"]["message"] == "no store 'nobody' (host 'nobody.shops.test')."
    assert health.json() == {"status": "ok"}

    app.stores.suspend(south)
    suspended, still_north = calls(
        web, ("GET", south_host, "/products", None), ("GET", north_host, "/products", None)
    )
    assert suspended.status_code == 403
    assert suspended.json()["error"]["message"] == f"store {south!r} is suspended."
    assert len(still_north.json()) == 2
