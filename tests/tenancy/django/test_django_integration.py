"""The Django integration in a real Django project (tests/tenancy/django/project.py) served
by Django's test Client: two stores on verified custom hosts, each seeing only its rows
through the SQLAlchemy session and the Django ORM; suspended 403, unknown 404, the same
bodies as the ASGI/WSGI middlewares; on SQLite, PostgreSQL and MariaDB stores."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.test import Client, override_settings
from sqlalchemy import func, select

from tenantry import ByHeader, Product, Tenantry
from tenantry.db.types import utcnow
from tenantry.errors import WrongDatabase
from tenantry.runtime import Platform
from tenantry.services import apikeys, stores
from tenantry.services.write_blocks import block_writes
from tenantry.tenancy import django as tenantry_django
from tenantry.tenancy.django import database as django_database
from tests.conftest import require_server
from tests.platform_fixtures import platform, settings
from tests.tenancy.django import project  # configures Django
from tests.tenancy.token_server import token_server
from tests.tenantry_fixtures import app, new_slug, open_store, product

__all__ = ["app", "platform", "project", "settings"]


class QuietHandler(WSGIRequestHandler):
    """Django's development request handler, without a log line per request."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def store_server(backend: str, platform: Platform) -> Iterator[str | None]:
    """Where the test's stores live: a SQLite file (None) or the local server, registered."""
    from tests.services.test_moves import drop_server_databases, register

    if backend == "sqlite":
        yield None
        return
    require_server(backend)
    register(platform, backend, backend)
    yield backend
    drop_server_databases(platform)


@pytest.fixture
def configured(app: Tenantry) -> Iterator[dict[str, Any]]:
    """``settings.TENANTRY`` naming the test's Tenantry; change it with :func:`using`."""
    config: dict[str, Any] = {
        "APP": app,
        "RESOLVE": ["host"],
        "HOST_PATTERN": "{slug}.shops.test",
        "EXEMPT": ["/healthz"],
        "TENANT_APPS": ["shop"],
    }
    tenantry_django.reset()
    with override_settings(TENANTRY=config):
        yield config
    tenantry_django.reset()


def using(config: dict[str, Any], **changes: Any) -> Any:
    """``settings.TENANTRY`` with ``changes``, the integration rebuilt from it."""
    tenantry_django.reset()
    return override_settings(TENANTRY={**config, **changes})


def verified(app: Tenantry, slug: str, host: str) -> None:
    """Claim ``host`` for ``slug`` and verify it against a local token server."""
    domain = app.stores.add_domain(slug, host)
    with token_server({host: domain.token}) as local:
        assert app.stores.verify_domain(slug, host, address=local).verified


def post(client: Client, host: str, sku: str) -> int:
    body = json.dumps({"sku": sku, "name": f"Product {sku}"})
    answer = client.post("/products", body, content_type="application/json", HTTP_HOST=host)
    return answer.status_code


def test_two_stores_on_custom_hosts_each_see_only_their_rows(
    app: Tenantry, backend: str, store_server: str | None, configured: dict[str, Any]
) -> None:
    north, south = new_slug("north"), new_slug("south")
    open_store(app, north, server=store_server)
    open_store(app, south, server=store_server)
    verified(app, north, "shop.north.test")
    verified(app, south, "shop.south.test")
    client = Client()

    assert [post(client, "shop.north.test", s) for s in ("N-1", "N-2")] == [201, 201]
    assert post(client, "Shop.South.test:8000", "S-1") == 201

    north_home = client.get("/", HTTP_HOST="shop.north.test").json()
    assert north_home == {"store": north, "via": "host", "products": "/products"}
    assert client.get("/products", HTTP_HOST="shop.north.test").json() == {"skus": ["N-1", "N-2"]}
    assert client.get("/products", HTTP_HOST="shop.south.test").json() == {"skus": ["S-1"]}
    # The subdomain pattern reaches the same store as its custom domain.
    by_subdomain = client.get("/products", HTTP_HOST=f"{south}.shops.test")
    assert by_subdomain.json() == {"skus": ["S-1"]}

    # The Django ORM: a model of a TENANT_APPS app is read from the request's store.
    if backend == "mysql":
        with pytest.raises(ImproperlyConfigured, match="mysql store are not supported"):
            client.get("/orm/products", HTTP_HOST="shop.north.test")
    else:
        north_orm = client.get("/orm/products", HTTP_HOST="shop.north.test").json()
        south_orm = client.get("/orm/products", HTTP_HOST="shop.south.test").json()
        assert (north_orm["skus"], north_orm["count_using_alias"]) == (["N-1", "N-2"], 2)
        assert (south_orm["skus"], south_orm["count_using_alias"]) == (["S-1"], 1)
        # Timestamps tenantry wrote (UTC) read back aware, as written.
        with app.tenant_session(north) as session:
            written = session.scalar(select(func.max(Product.created_at)))
        assert written is not None
        assert datetime.fromisoformat(north_orm["newest_created"]) == written
        # A row written through the ORM is the store's row for tenantry too (same UUID,
        # JSON and timestamp storage), and only that store's.
        body = json.dumps({"sku": "N-ORM", "name": "Made by Django"})
        made = client.post(
            "/orm/products", body, content_type="application/json", HTTP_HOST="shop.north.test"
        )
        assert made.status_code == 201
        with app.tenant_session(north) as session:
            row = session.scalar(select(Product).where(Product.sku == "N-ORM"))
            assert row is not None
            assert (str(row.id), row.name, row.metadata_) == (
                made.json()["id"],
                "Made by Django",
                {},
            )
            assert row.created_at.tzinfo is not None
        listed = client.get("/products", HTTP_HOST="shop.north.test").json()
        assert listed == {"skus": ["N-1", "N-2", "N-ORM"]}
        assert client.get("/products", HTTP_HOST="shop.south.test").json() == {"skus": ["S-1"]}

    unknown = client.get("/products", HTTP_HOST="nobody.shops.test")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "no store 'nobody' (host 'nobody.shops.test')."
    assert client.get("/products", HTTP_HOST="shop.elsewhere.test").status_code == 404
    assert client.get("/products", HTTP_HOST="not a host").status_code == 400
    assert client.get("/healthz", HTTP_HOST="not a host").json() == {"status": "ok"}

    app.stores.suspend(south)
    refused = client.get("/products", HTTP_HOST="shop.south.test")
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "type": "StoreSuspended",
        "message": f"store {south!r} is suspended.",
        "hint": refused.json()["error"]["hint"],
    }
    assert client.get("/orm/products", HTTP_HOST="shop.south.test").status_code == 403
    still = client.get("/products", HTTP_HOST="shop.north.test").json()["skus"]
    assert still == (["N-1", "N-2"] if backend == "mysql" else ["N-1", "N-2", "N-ORM"])


def test_header_and_path_prefix_resolution(app: Tenantry, configured: dict[str, Any]) -> None:
    east = new_slug("east")
    open_store(app, east)
    client = Client()
    with app.master_session() as master:
        key = apikeys.create_key(
            master,
            name="django",
            scope=apikeys.Scope.STORE,
            store=stores.get_store(master, east),
            actor="cli:test",
        ).plaintext
    with using(configured, RESOLVE=["path:/t/", ByHeader("X-Shop"), "api-key"]):
        by_key = client.get("/", HTTP_HOST="any.test", HTTP_AUTHORIZATION=f"Bearer {key}")
        assert by_key.json()["via"] == "api-key"
        unknown_key = client.get("/", HTTP_HOST="any.test", HTTP_X_API_KEY="tnt_nope")
        assert unknown_key.status_code == 401
        assert post(client, "any.test", "E-1") == 404  # neither names a store
        home = client.get(f"/t/{east}/", HTTP_HOST="any.test").json()
        # The prefix is the script prefix: Django reverses URLs under it.
        assert home == {"store": east, "via": "path", "products": f"/t/{east}/products"}
        listed = client.get("/products", HTTP_HOST="any.test", HTTP_X_SHOP=east).json()
        assert listed == {"skus": []}
        assert client.get("/t/nobody-here/products", HTTP_HOST="any.test").status_code == 404


def test_a_store_suspended_after_resolution_is_refused_by_its_session(
    app: Tenantry, configured: dict[str, Any]
) -> None:
    west = new_slug("west")
    open_store(app, west)
    app.resolution_cache.ttl = 60
    client = Client()
    assert client.get("/products", HTTP_HOST=f"{west}.shops.test").status_code == 200
    # Suspended by another process: this one's resolution cache still names the store,
    # the session (which reads the store's row) refuses it, and the middleware answers.
    with app.platform.writer_sessions.begin() as master:
        stores.suspend_store(master, stores.get_store(master, west), actor="cli:test")
    refused = client.get("/products", HTTP_HOST=f"{west}.shops.test")
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == f"store {west!r} is suspended."


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"RESOLVE": ["dns"]}, "TENANTRY['RESOLVE'] holds 'dns'"),
        ({"RESOLVE": "host"}, "must be a non-empty list"),
        ({"EXEMPT": "/healthz"}, "TENANTRY['EXEMPT'] must be a list of strings"),
        ({"TENANT_APP": ["shop"]}, "unknown key(s) TENANT_APP"),
        ({"APP": "tests.tenancy.django.project.home"}, "is not a Tenantry"),
    ],
)
def test_bad_settings_are_named(
    configured: dict[str, Any], changes: dict[str, Any], message: str
) -> None:
    with using(configured, **changes), pytest.raises(ImproperlyConfigured) as raised:
        Client().get("/", HTTP_HOST="any.shops.test")
    assert message in str(raised.value)


def test_writes_to_a_blocked_store_are_503_and_reads_go_on(
    app: Tenantry, configured: dict[str, Any]
) -> None:
    south = new_slug("south")
    open_store(app, south)
    host = f"{south}.shops.test"
    client = Client()
    assert post(client, host, "BEFORE") == 201
    with app.master_session() as master:  # as a move does: the block on the store row
        store_id = stores.get_store(master, south).id
        block_writes(master, store_id, "store is being moved", utcnow() + timedelta(minutes=2))
    body = json.dumps({"sku": "DURING", "name": "During"})
    blocked = client.post("/products", body, content_type="application/json", HTTP_HOST=host)
    assert blocked.status_code == 503
    assert blocked.json()["error"]["type"] == "WritesBlocked"
    assert 1 <= int(blocked["Retry-After"]) <= 30
    assert client.get("/products", HTTP_HOST=host).json() == {"skus": ["BEFORE"]}


def test_a_django_connection_leading_to_another_database_is_refused(
    app: Tenantry, configured: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    north, south = new_slug("north"), new_slug("south")
    open_store(app, north)
    open_store(app, south)
    south_url = app.tenant_engine(south).url
    # As if Django's settings for north's alias led to south's database (a search_path or
    # a connection option Django does not carry, say): its identity is not north's.
    real_config = django_database._django_database
    monkeypatch.setattr(django_database, "_django_database", lambda url: real_config(south_url))
    with pytest.raises(WrongDatabase, match=f"for store {north!r} does not reach"):
        Client().get("/orm/products", HTTP_HOST=f"{north}.shops.test")
    monkeypatch.undo()
    served = Client().get("/orm/products", HTTP_HOST=f"{north}.shops.test").json()
    assert (served["skus"], served["count_using_alias"]) == ([], 0)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"], indirect=True)  # ORM: not MySQL
def test_concurrent_requests_on_a_threaded_wsgi_server_never_cross_stores(
    app: Tenantry, store_server: str | None, configured: dict[str, Any]
) -> None:
    slugs = [new_slug("east"), new_slug("west")]
    for n, slug in enumerate(slugs):
        open_store(app, slug, server=store_server)
        with app.tenant_session(slug) as session:
            session.add_all(product(f"{slug}-{i}") for i in range(n + 1))
    expected = {slug: sorted(f"{slug}-{i}" for i in range(n + 1)) for n, slug in enumerate(slugs)}
    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler)
    server.set_app(WSGIHandler())
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    # One client for every thread (httpx's is thread-safe): a client apiece built 80 TLS
    # contexts, CA bundle and all, for plain-HTTP requests. Its pool still holds a
    # connection per request in flight, so the server's threads serve them at once.
    http = httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(max_keepalive_connections=0))

    def ask(n: int) -> tuple[str, str, list[str]]:
        slug = slugs[n % 2]
        path = "/orm/products" if n % 4 < 2 else "/products"
        answer = http.get(path, headers={"Host": f"{slug}.shops.test"})
        assert answer.status_code == 200, answer.text
        return slug, path, answer.json()["skus"]

    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(80)))
    finally:
        http.close()
        server.shutdown()
        server.server_close()
    assert len(answers) == 80
    assert {path for _, path, _ in answers} == {"/orm/products", "/products"}
    for slug, path, skus in answers:
        assert skus == expected[slug], (slug, path)


def test_without_settings_everything_comes_from_the_environment(
    app: Tenantry, configured: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    east = new_slug("east")
    open_store(app, east)
    monkeypatch.setenv("TENANTRY_TENANT_HOST_PATTERN", "{slug}.from-env.test")
    tenantry_django.reset()
    with override_settings(TENANTRY={}):
        try:
            home = Client().get("/", HTTP_HOST=f"{east}.from-env.test")
            assert home.json()["store"] == east
            assert tenantry_django.tenancy().app is not app  # Tenantry.from_env()
        finally:
            tenantry_django.tenancy().app.close()
            tenantry_django.reset()
