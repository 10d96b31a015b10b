"""Fixtures that create real databases on SQLite, PostgreSQL and MariaDB and drop them after.

Server URLs come from TENANTRY_TEST_POSTGRES_URL and TENANTRY_TEST_MYSQL_URL (defaults: the
machine's local servers). A test needing an unreachable server is skipped locally and fails
when CI=true, so CI can never pass by skipping.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL

from tenantry.db.admin import create_database, drop_database
from tenantry.db.engines import make_engine
from tenantry.db.urls import parse_url
from tenantry.errors import DatabaseUnreachable

# pytest-xdist workers inherit COLUMNS=80, which Rich would fix as the CLI's width when
# tenantry.cli is imported; tests give a width per call (env={"COLUMNS": ...}) instead.
os.environ.pop("COLUMNS", None)
# A worker refills the spare pools of every server its master knows, and the test servers are
# shared: tests keep the pool off unless they are about it (tests/operations/test_spare_*.py
# and tests/cli/test_servers_spares.py turn it on and drop what they made).
os.environ.setdefault("TENANTRY_SPARE_DATABASES", "0")

BACKENDS = ("sqlite", "postgresql", "mysql")
SERVER_URLS = {
    "postgresql": os.environ.get(
        "TENANTRY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    ),
    "mysql": os.environ.get("TENANTRY_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/mysql"),
}
REDIS_URL = os.environ.get("TENANTRY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@cache
def _server_problem(backend: str) -> str | None:
    from tenantry.db.admin import database_exists

    if backend == "redis":
        import redis

        try:
            redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
        except redis.RedisError as exc:
            return str(exc)
        return None
    try:
        database_exists(parse_url(SERVER_URLS[backend]))
    except DatabaseUnreachable as exc:
        return exc.message
    return None


def require_server(backend: str) -> None:
    """Skip (locally) or fail (in CI) when ``backend``'s server cannot be reached."""
    if backend == "sqlite":
        return
    problem = _server_problem(backend)
    if problem:
        if IN_CI:
            pytest.fail(f"{backend} server needed in CI: {problem}")
        pytest.skip(f"{backend} server unreachable: {problem}")


DbFactory = Callable[..., URL]


def pytest_configure(config: pytest.Config) -> None:
    """The run fails if it leaves databases, roles or users on the test servers
    (:mod:`tests.leak_check`)."""
    from tests import leak_check

    leak_check.register(config, SERVER_URLS)


#: The test module whose browser is open (tests/console/conftest.py), if one is: Playwright's
#: sync API keeps its asyncio loop marked running in this thread for as long as it is.
BROWSER_OPEN = pytest.StashKey[Path | None]()


@pytest.fixture(autouse=True)
def no_event_loop_left_running(request: pytest.FixtureRequest) -> None:
    """Fail a test that starts with an asyncio loop running in this thread, unless its own
    module's browser is open: a fixture of an earlier test left it (e.g. a browser scoped
    wider than its module), and this test's own ``asyncio.run`` would fail far from the
    cause."""
    if request.config.stash.get(BROWSER_OPEN, None) == request.path:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return  # none running: as it should be
    pytest.fail(
        f"an asyncio loop ({loop!r}) is left running in this thread by an earlier test's "
        "fixture (a wider-scoped Playwright or event-loop fixture?); scope it to the tests "
        "that use it so it is closed before other tests run"
    )


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two workers per core (at most 8), as most of a test's time is spent
    waiting on database servers and tenantry processes rather than computing."""
    return min(8, 2 * (os.cpu_count() or 1))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend in turn."""
    require_server(request.param)
    return str(request.param)


@pytest.fixture
def new_database(backend: str, tmp_path: Path) -> Iterator[DbFactory]:
    """A factory of fresh, empty databases on ``backend``, all dropped after the test."""
    made: list[URL] = []

    def make(label: str = "db", *, create: bool = True) -> URL:
        name = f"tt_{label}_{uuid.uuid4().hex[:10]}"
        if backend == "sqlite":
            url = parse_url(f"sqlite:///{tmp_path / (name + '.db')}")
        else:
            url = parse_url(SERVER_URLS[backend]).set(database=name)
        if create:
            create_database(url)
        made.append(url)
        return url

    yield make
    for url in made:
        drop_database(url)


def server_databases(backend: str, prefix: str) -> list[str]:
    """The names of the databases on ``backend``'s test server that start with ``prefix``."""
    from sqlalchemy import text

    engine = make_engine(parse_url(SERVER_URLS[backend]), pool_size=1)
    try:
        with engine.connect() as conn:
            if backend == "postgresql":
                names = conn.scalars(text("SELECT datname FROM pg_database"))
            else:
                names = conn.scalars(text("SELECT schema_name FROM information_schema.schemata"))
            return [str(n) for n in names if str(n).startswith(prefix)]
    finally:
        engine.dispose()


def server_has_database(backend: str, name: str) -> bool:
    """Whether database ``name`` exists on ``backend``'s test server, asked of the server's
    own catalog (not tenantry's helper)."""
    return name in server_databases(backend, name)


def drop_schema_templates(schema_name: str) -> None:
    """Drop the builder's templates of tenant schema ``schema_name`` on the PostgreSQL test
    server (``tenantry_tpl_<schema_name>_<revision>``, :mod:`tenantry.db.builder`): a test
    plug-in's are made when one of its stores gets a server database, and nothing else drops
    them. A test using the plug-in at the same time that finds its template gone builds it
    again or creates its database the plain way."""
    from tenantry.db.builder import template_name
    from tenantry.db.schemas import tenant_schema
    from tenantry.settings import Settings

    own = tenant_schema(Settings.model_fields["tenant_schema"].default).name
    if schema_name == own:  # a cache every provisioning on the server shares
        raise ValueError(
            f"the templates of tenantry's own tenant schema ({template_name.__module__}) are "
            "a cache every test provisioning on the server shares: they are kept"
        )
    if _server_problem("postgresql"):
        return
    for name in server_databases("postgresql", f"tenantry_tpl_{schema_name}_"):
        drop_database(parse_url(SERVER_URLS["postgresql"]).set(database=name))


@pytest.fixture
def server_slug() -> Iterator[str]:
    """A store slug no other test uses; every database left on the test servers for it
    (``t_<slug>_…``, what provisioning names them) and every login its stores got are dropped
    after the test, whether the test passed or provisioning failed half-way."""
    slug = f"srv-{uuid.uuid4().hex[:8]}"
    yield slug
    prefix = f"t_{slug.replace('-', '_')}_"
    for backend in ("postgresql", "mysql"):
        if _server_problem(backend):  # unreachable: nothing can have been created there
            continue
        for name in server_databases(backend, prefix):
            drop_database(parse_url(SERVER_URLS[backend]).set(database=name))
        from tests.store_logins import drop_logins_named

        drop_logins_named(backend, prefix)  # the stores' runtime logins: t_<slug>_<id>_a/b


@pytest.fixture
def redis_queue() -> Iterator[dict[str, str]]:
    """Environment for a Redis job queue of this test's own (``TENANTRY_QUEUE_NAME``), so
    tests running at once never take each other's jobs; its keys are deleted after."""
    require_server("redis")
    import redis

    name = f"test_{uuid.uuid4().hex[:12]}"
    yield {"TENANTRY_QUEUE_URL": REDIS_URL, "TENANTRY_QUEUE_NAME": name}
    client = redis.Redis.from_url(REDIS_URL)
    try:
        for pattern in (f"huey.*.{name}", f"huey.*.{name}.*"):
            for key in client.scan_iter(match=pattern):
                client.delete(key)
    finally:
        client.close()


@pytest.fixture
def engines() -> Iterator[Callable[[URL], Engine]]:
    """Engines made through this factory are disposed after the test."""
    made: list[Engine] = []

    def make(url: URL) -> Engine:
        engine = make_engine(url, pool_size=1)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.dispose()
