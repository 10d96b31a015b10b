"""Resolving a request's store: custom domains (only once verified), subdomains, header,
path prefix and store API key, through the ASGI and WSGI middlewares."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tenantry import ByApiKey, ByHeader, ByHost, ByPathPrefix, TenantMiddleware, Tenantry
from tenantry.services import apikeys, stores
from tenantry.tenancy import WsgiTenantMiddleware
from tenantry.tenancy.asgi import Receive, Scope, Send
from tests.platform_fixtures import platform, settings
from tests.tenancy.token_server import token_server
from tests.tenantry_fixtures import app, open_store

__all__ = ["app", "platform", "settings"]


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """An ASGI app answering with the store it was handed and the path it sees."""
    store = scope["state"]["tenantry_store"]
    body = json.dumps(
        {"slug": store.slug, "via": store.via, "path": scope["path"], "root": scope["root_path"]}
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def get(web: Any, path: str = "/", **headers: str) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(call())


@pytest.fixture
def shops(app: Tenantry) -> Tenantry:
    open_store(app, "alpha")
    open_store(app, "beta")
    return app


def test_custom_domains_resolve_only_once_verified(shops: Tenantry) -> None:
    web = TenantMiddleware(echo, shops.resolver(ByHost()))
    claimed = shops.stores.add_domain("alpha", "Shop.Alpha.TEST")
    assert claimed.host == "shop.alpha.test"
    assert claimed.verified_at is None
    unverified = get(web, host="shop.alpha.test")
    assert unverified.status_code == 404
    assert unverified.json()["error"]["message"] == "no store matches this request."

    with token_server({}) as nowhere:  # the token is not published: stays unverified
        failed = shops.stores.verify_domain("alpha", "shop.alpha.test", address=nowhere)
    assert not failed.verified
    assert "404" in failed.detail
    assert get(web, host="shop.alpha.test").status_code == 404

    with token_server({"shop.alpha.test": claimed.token}) as local:
        found = shops.stores.verify_domain("alpha", "shop.alpha.test", address=local)
    assert (found.verified, found.method) == (True, "http")
    # Case-insensitive, the port ignored.
    assert get(web, host="SHOP.alpha.test:8443").json()["slug"] == "alpha"
    shops.stores.remove_domain("alpha", "shop.alpha.test")
    assert get(web, host="shop.alpha.test").status_code == 404


def test_subdomains_unknown_stores_suspension_and_garbage_hosts(shops: Tenantry) -> None:
    web = TenantMiddleware(echo, shops.resolver(ByHost("{slug}.shops.test")))
    assert get(web, host="alpha.shops.test").json() == {
        "slug": "alpha",
        "via": "host",
        "path": "/",
        "root": "",
    }
    assert get(web, host="Beta.Shops.Test:80").json()["slug"] == "beta"
    missing = get(web, host="gamma.shops.test")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "no store 'gamma' (host 'gamma.shops.test')."
    assert get(web, host="alpha.elsewhere.test").status_code == 404
    for garbage in ("bad host", "a..b", "x:y", "[::1]", "-a.shops.test"):
        refused = get(web, host=garbage)
        assert refused.status_code == 400, garbage
        assert "Host header" in refused.json()["error"]["message"]
    shops.stores.suspend("beta")
    suspended = get(web, host="beta.shops.test")
    assert suspended.status_code == 403
    assert suspended.json()["error"]["type"] == "StoreSuspended"


def test_header_path_and_api_key_in_order(shops: Tenantry) -> None:
    resolver = shops.resolver(ByPathPrefix("/t/"), ByHeader("X-Tenant"), ByApiKey())
    web = TenantMiddleware(echo, resolver, exempt=("/healthz",))
    by_path = get(web, "/t/beta/products?x=1", **{"X-Tenant": "alpha"})
    assert by_path.json() == {
        "slug": "beta",
        "via": "path",
        "path": "/t/beta/products",
        "root": "/t/beta",
    }
    assert get(web, "/products", **{"X-Tenant": "Alpha"}).json()["via"] == "header"
    assert get(web, "/t/nope/x").status_code == 404
    with shops.platform.sessions.begin() as session:
        key = apikeys.create_key(
            session,
            name="k",
            scope=apikeys.Scope.STORE,
            store=stores.get_store(session, "beta"),
            actor="cli:test",
        ).plaintext
    assert get(web, "/x", Authorization=f"Bearer {key}").json()["slug"] == "beta"
    assert get(web, "/x", **{"X-API-Key": "tnt_zz_nope"}).status_code == 401
    assert get(web, "/x").status_code == 404


def test_wsgi_middleware(shops: Tenantry) -> None:
    seen: dict[str, Any] = {}

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(store=environ["tenantry.store"].slug, path=environ["PATH_INFO"])
        seen["script"] = environ["SCRIPT_NAME"]
        start_response("200 OK", [])
        return [b"ok"]

    web = WsgiTenantMiddleware(
        wsgi_app, shops.resolver(ByHost("{slug}.shops.test"), ByPathPrefix())
    )
    statuses: list[str] = []

    def call(path: str, host: str) -> bytes:
        environ = {"PATH_INFO": path, "SCRIPT_NAME": "", "HTTP_HOST": host}
        return b"".join(web(environ, lambda status, headers: statuses.append(status)))

    assert call("/", "ALPHA.shops.test:8000") == b"ok"
    assert seen["store"] == "alpha"
    assert call("/t/beta/a/b", "other.test") == b"ok"
    assert seen == {"store": "beta", "path": "/a/b", "script": "/t/beta"}
    body = json.loads(call("/", "zeta.shops.test"))
    assert statuses[-1].startswith("404")
    assert "zeta" in body["error"]["message"]
    call("/", "bad host")
    assert statuses[-1].startswith("400")
