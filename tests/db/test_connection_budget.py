"""At most N connections per database server from one process, however many tenant pools.

Sixteen stores on one real PostgreSQL or MariaDB server, read from twelve threads through the
tenant router; the server's own view of this process's connections (pg_stat_activity,
information_schema.processlist) is sampled all along and never exceeds the bound. A server
lists a session for a moment after its client closed it (the backend is still exiting), so the
sample leaves out the sessions this process has already closed: what is counted is what the
process holds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import Pool

from tenantry.db.connection_budget import ConnectionBudget, server_key
from tenantry.db.engines import make_engine
from tenantry.db.master.models import Store
from tenantry.db.tenant.store.models import Category
from tenantry.db.urls import parse_url
from tenantry.errors import ConnectionsExhausted
from tenantry.runtime import Platform
from tenantry.services.routing import TenantRouter
from tests.conftest import SERVER_URLS, DbFactory, require_server
from tests.platform_fixtures import platform, settings
from tests.store_setup import connect_store
from tests.templates import migrated_database

__all__ = ["platform", "settings"]

STORES = 16
THREADS = 12
BOUND = 6


@pytest.fixture(params=["postgresql", "mysql"])
def backend(request: pytest.FixtureRequest) -> str:
    """The server backends (SQLite files have no server to bound)."""
    require_server(request.param)
    return str(request.param)


@pytest.fixture
def tenant_dbs(
    request: pytest.FixtureRequest, platform: Platform, new_database: DbFactory
) -> list[URL]:
    """STORES stores (or as many as the test's ``stores`` mark asks), each on its own migrated
    database on the test server."""
    mark = request.node.get_closest_marker("stores")
    urls = []
    for n in range(mark.args[0] if mark else STORES):
        url = new_database("cb", create=False)
        migrated_database(url, platform.tenant_spec)
        connect_store(platform, f"cb-{n}", url)
        urls.append(url)
    return urls


@pytest.fixture
def admin(backend: str) -> Iterator[Engine]:
    engine = make_engine(parse_url(SERVER_URLS[backend]), pool_size=1)
    yield engine
    engine.dispose()


def _session_id(dbapi_conn: Any) -> int | None:
    """The server's id of a psycopg or PyMySQL connection (``None`` for SQLite's)."""
    pid = getattr(getattr(dbapi_conn, "info", None), "backend_pid", None)
    if pid is None and hasattr(dbapi_conn, "thread_id"):
        pid = dbapi_conn.thread_id()
    return None if pid is None else int(pid)


class ClosedSessions:
    """The server session ids of the connections this process has closed (or is closing)."""

    def __init__(self) -> None:
        self.ids: set[int] = set()

    def closing(self, dbapi_conn: Any, *_: Any) -> None:
        if (sid := _session_id(dbapi_conn)) is not None:
            self.ids.add(sid)

    def opened(self, dbapi_conn: Any, *_: Any) -> None:
        # A PostgreSQL pid can be handed out again: a new session with it means the old one
        # has exited, and the new one counts.
        self.ids.discard(_session_id(dbapi_conn))


@pytest.fixture
def closed() -> Iterator[ClosedSessions]:
    """Every pool's opened and closing connections, followed while the test runs."""
    sessions = ClosedSessions()
    listeners = [
        ("connect", sessions.opened),
        ("close", sessions.closing),
        ("close_detached", sessions.closing),
    ]
    for name, fn in listeners:
        event.listen(Pool, name, fn)
    yield sessions
    for name, fn in listeners:
        event.remove(Pool, name, fn)


def _open_to(
    admin: Engine, backend: str, names: list[str], closed: ClosedSessions | None = None
) -> int:
    """Connections open to the databases ``names``, as the server counts them, leaving out
    the sessions this process has closed (``closed``)."""
    query = (
        "SELECT pid, datname FROM pg_stat_activity"
        if backend == "postgresql"
        else "SELECT id, db FROM information_schema.processlist"
    )
    with admin.connect() as conn:
        rows = conn.execute(text(query)).all()
    wanted = set(names)
    gone = closed.ids if closed is not None else set()
    return sum(1 for pid, db in rows if db in wanted and int(pid) not in gone)


def _hammer(platform: Platform, router: TenantRouter, rounds: int) -> list[BaseException]:
    with platform.sessions() as master:
        rows = list(master.scalars(select(Store).where(Store.slug.like("cb-%"))))
        master.expunge_all()
    failures: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            with platform.sessions() as master:
                for n in range(rounds):
                    store = master.merge(rows[(offset * 7 + n) % len(rows)], load=False)
                    with router.session(master, store) as tenant:
                        assert tenant.scalar(select(func.count()).select_from(Category)) == 2
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


def _sampled(
    admin: Engine, backend: str, names: list[str], run: threading.Thread, closed: ClosedSessions
) -> int:
    peak = 0
    run.start()
    while run.is_alive():
        peak = max(peak, _open_to(admin, backend, names, closed))
        time.sleep(0.01)
    return peak


def test_connections_to_a_server_never_exceed_the_bound(
    backend: str,
    platform: Platform,
    tenant_dbs: list[URL],
    admin: Engine,
    closed: ClosedSessions,
) -> None:
    names = [str(u.database) for u in tenant_dbs]
    budget = ConnectionBudget(BOUND, wait_seconds=30)
    router = TenantRouter(
        platform.box, max_engines=STORES, pool_size=2, idle_seconds=3600, budget=budget
    )
    failures: list[BaseException] = []
    run = threading.Thread(target=lambda: failures.extend(_hammer(platform, router, 15)))
    try:
        peak = _sampled(admin, backend, names, run, closed)
    finally:
        router.dispose_all()
    assert failures == []
    assert 1 < peak <= BOUND, f"the server saw {peak} connections at once"
    assert budget.peak(server_key(tenant_dbs[0])) <= BOUND
    assert budget.open_now(server_key(tenant_dbs[0])) == 0  # dispose_all closed them all
    assert _gone(admin, backend, names)

    # The control: the same load does exceed the bound when nothing bounds it.
    router = TenantRouter(platform.box, max_engines=STORES, pool_size=2, idle_seconds=3600)
    run = threading.Thread(target=lambda: _hammer(platform, router, 15))
    try:
        unbounded = _sampled(admin, backend, names, run, closed)
        unbounded = max(unbounded, _open_to(admin, backend, names, closed))
    finally:
        router.dispose_all()
    assert unbounded > BOUND


def _gone(admin: Engine, backend: str, names: list[str]) -> bool:
    """Whether the server has seen every connection to ``names`` end (its backends exit
    shortly after the client closes)."""
    deadline = time.monotonic() + 10
    while _open_to(admin, backend, names):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.stores(2)
def test_a_full_server_fails_the_checkout_with_a_clear_error(
    backend: str, platform: Platform, tenant_dbs: list[URL]
) -> None:
    budget = ConnectionBudget(1, wait_seconds=0.3)
    router = TenantRouter(platform.box, max_engines=STORES, pool_size=1, budget=budget)
    with platform.sessions() as master:
        first, second = (
            master.scalars(select(Store).where(Store.slug == s)).one() for s in ("cb-0", "cb-1")
        )
        try:
            with router.connection(master, first) as held:
                held.execute(text("SELECT 1"))
                with pytest.raises(ConnectionsExhausted) as caught:
                    router.engine(master, second)
            assert "TENANTRY_MAX_CONNECTIONS_PER_SERVER" in str(caught.value)
            assert "@" not in caught.value.message  # no credentials in the message
            # Once the first is back (idle in its pool), the router closes it for the second.
            with router.session(master, second) as tenant:
                assert tenant.scalar(select(func.count()).select_from(Category)) == 2
        finally:
            router.dispose_all()


@pytest.mark.stores(1)
def test_a_connection_keeps_its_slot_until_the_driver_has_closed_it(
    backend: str, tenant_dbs: list[URL]
) -> None:
    """SQLAlchemy's close event comes just before the driver's close: a slot given back there
    would let the next connection open while this one still is."""
    budget = ConnectionBudget(1, wait_seconds=0.3)
    engine = budget.bind(make_engine(tenant_dbs[0], pool_size=1))
    key = server_key(tenant_dbs[0])
    seen_while_closing: list[int] = []
    event.listen(engine.pool, "close", lambda *_: seen_while_closing.append(budget.open_now(key)))
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert budget.open_now(key) == 1  # idle in its pool
    engine.dispose()
    assert seen_while_closing == [1]
    assert budget.open_now(key) == 0
