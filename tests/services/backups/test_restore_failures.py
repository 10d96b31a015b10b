"""A restore that fails never costs the store its data or its writes.

Proved against real SQLite files, PostgreSQL and MariaDB databases: a restore stopped just
before the switch, and one whose restored copy fails its checks (the catalog row leads to
another store's artifact), leave the store serving its old data, drop the staging database
on the server, lift the write block and say what went wrong. On PostgreSQL, a session held
open on the store's database does not stop the switch (the rename is retried after the
session is ended), and nothing is left behind.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import text, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tenantry.db.admin import database_exists
from tenantry.db.engines import connect, make_engine, sqlite_path
from tenantry.db.master.models import Backup
from tenantry.db.urls import backend_of
from tenantry.errors import Conflict, TenantryError, WritesBlocked
from tenantry.failpoints import FailPointError
from tenantry.operations.backup_take import take_backup
from tenantry.operations.restore import restore
from tenantry.services import stores
from tenantry.services.backups.restore_plan import RestorePlan, plan_restore
from tenantry.services.backups.targets import resolve
from tenantry.services.write_blocks import ensure_writable
from tests.conftest import DbFactory
from tests.services.backups.conftest import ShopDb, add_products
from tests.store_setup import connect_store


def _backup(shop: ShopDb, slug: str | None = None) -> Backup:
    p = shop.platform
    with p.sessions() as session:
        target = resolve(session, p.box, p.settings, f"store:{slug or shop.slug}")
    return take_backup(p.sessions, shop.storage, target, actor="cli:test")


def _skus(shop: ShopDb) -> list[str]:
    """The store's products as the API would read them (through the router)."""
    p = shop.platform
    with p.sessions() as master:
        store = stores.get_store(master, shop.slug)
        with p.router.session(master, store) as tenant:
            rows = tenant.execute(text("SELECT sku FROM products ORDER BY sku")).scalars()
            return list(rows)


def _plan(shop: ShopDb, backup: Backup) -> RestorePlan:
    p = shop.platform
    with p.sessions() as session:
        return plan_restore(session, p.box, p.settings, str(backup.id), target=None, in_place=True)


def leftovers(url: URL) -> list[str]:
    """Databases (SQLite: files) next to the store's whose name starts with the store's
    database name: a restore's staging copy (``*_restoring_*``) or a replaced one (``*_old_*``)."""
    path = sqlite_path(url)
    if path is not None:
        return sorted(p.name for p in path.parent.iterdir() if f"{path.stem}_" in p.name)
    name = str(url.database)
    if backend_of(url) == "postgresql":
        query = "SELECT datname FROM pg_database WHERE datname LIKE :n ORDER BY datname"
        server = url.set(database="postgres")
    else:
        query = (
            "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE :n "
            "ORDER BY schema_name"
        )
        server = url
    engine = make_engine(server, pooled=False)
    try:
        with connect(engine) as conn:
            return list(
                conn.execute(text(query), {"n": name.replace("_", "\\_") + "\\_%"}).scalars()
            )
    finally:
        engine.dispose()


def _block(shop: ShopDb) -> str | None:
    with shop.platform.sessions() as session:
        return stores.get_store(session, shop.slug).write_block_reason


class Watch:
    """Called with restore progress (bytes restored into staging): records what the server
    and master looked like in the middle of the restore, so the test knows the staging copy
    and the write block it later finds gone did exist."""

    def __init__(self, shop: ShopDb) -> None:
        self.shop = shop
        self.staging: list[str] = []
        self.refused: str | None = None

    def __call__(self, done: int) -> None:
        if self.staging:
            return
        self.staging = leftovers(self.shop.url)
        with self.shop.platform.sessions() as session:
            try:
                ensure_writable(stores.get_store(session, self.shop.slug))
            except WritesBlocked as exc:
                self.refused = exc.message


def test_a_restore_failing_before_the_switch_keeps_the_old_data(
    shop: ShopDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = _backup(shop)
    add_products(shop, "KEEP-ME")
    plan = _plan(shop, backup)
    watch = Watch(shop)
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "restore.before_switch=raise")

    with pytest.raises(TenantryError) as failed:
        restore(
            shop.platform.sessions,
            shop.storage,
            shop.platform.settings,
            plan,
            confirm=plan.confirm_name,
            on_progress=watch,
            actor="cli:test",
        )
    monkeypatch.delenv("TENANTRY_FAILPOINTS")

    # What a user reads: which restore failed, why, and that the target was not touched.
    message = str(failed.value)
    assert f"restoring backup {backup.id}" in message
    assert "fail point restore.before_switch reached" in message
    assert "was not changed" in message
    assert isinstance(failed.value.__cause__, FailPointError)
    # The staging copy existed during the restore, and the store's writes were refused.
    assert len(watch.staging) == 1
    assert "_restoring_" in watch.staging[0]
    assert watch.refused is not None
    assert f"restoring backup {backup.id}" in watch.refused
    # Afterwards: old data served, staging gone from the server, writes accepted again.
    assert _skus(shop) == ["A-1", "A-2", "A-3", "KEEP-ME"]
    assert leftovers(shop.url) == []
    assert _block(shop) is None
    add_products(shop, "AFTER-1")
    assert _skus(shop) == ["A-1", "A-2", "A-3", "AFTER-1", "KEEP-ME"]


def _provision(shop: ShopDb, slug: str, url: URL) -> None:
    connect_store(shop.platform, slug, url, name=slug.title())


def test_a_restored_copy_that_fails_its_checks_is_never_switched_in(
    shop: ShopDb, new_database: DbFactory
) -> None:
    # The real cause: the catalog row of shop's backup leads to another store's artifact
    # (a mix-up in storage). Its hash matches, so only the checks of the restored copy can
    # tell: the restored identity is the other store's instance.
    _provision(shop, "other", new_database("other"))
    backup, foreign = _backup(shop), _backup(shop, "other")
    with shop.platform.sessions.begin() as session:
        session.execute(
            update(Backup)
            .where(Backup.id == backup.id)
            .values(
                artifact_key=foreign.artifact_key,
                sha256=foreign.sha256,
                size_bytes=foreign.size_bytes,
            )
        )
    add_products(shop, "KEEP-ME")
    plan = _plan(shop, backup)
    watch = Watch(shop)

    with pytest.raises(Conflict) as failed:
        restore(
            shop.platform.sessions,
            shop.storage,
            shop.platform.settings,
            plan,
            confirm=plan.confirm_name,
            on_progress=watch,
            actor="cli:test",
        )

    message = str(failed.value)
    assert f"the restored copy of backup {backup.id} failed its checks" in message
    assert f"instance {foreign.instance_id}" in message
    assert "The target was not touched" in message
    assert "tenantry backup verify" in message
    assert len(watch.staging) == 1
    assert watch.refused is not None
    assert _skus(shop) == ["A-1", "A-2", "A-3", "KEEP-ME"]
    assert leftovers(shop.url) == []
    assert _block(shop) is None
    add_products(shop, "AFTER-1")
    assert "AFTER-1" in _skus(shop)


class Reader:
    """What a busy API process does to the store's database while it is restored: reads
    through a pooled engine (pre-ping on, as tenantry's), whose connection stays open between
    reads and is opened again at once when the server ends it."""

    def __init__(self, url: URL) -> None:
        self.engine = make_engine(url, pool_size=1)
        self.stop = threading.Event()
        self.reads = 0
        self.sessions: set[int] = set()  # server process ids: a new one is a new session
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, name="reader", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                with self.engine.connect() as conn:
                    conn.execute(text("SELECT count(*) FROM products")).scalar()
                    self.sessions.add(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
                self.reads += 1
            except DBAPIError as exc:
                # A connection opened in the instant of the renames is refused ("database
                # does not exist ... just been dropped or renamed"): the API answers that one
                # request with an error, and the next connects to the restored database.
                self.errors.append(str(exc.orig))
            self.stop.wait(0.01)

    def __enter__(self) -> Reader:
        self.thread.start()
        deadline = time.monotonic() + 10
        while self.reads == 0:
            assert time.monotonic() < deadline, "the reader never read"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()
        self.engine.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_sessions_on_the_store_database_do_not_stop_the_postgresql_switch(
    shop: ShopDb,
) -> None:
    backup = _backup(shop)
    add_products(shop, "LATE-1")
    plan = _plan(shop, backup)
    # A session idle in a transaction that holds a lock on a table of the store's database,
    # and a reader that keeps a connection open and reconnects whenever it is ended: either
    # would make ALTER DATABASE ... RENAME fail ("being accessed by other users").
    held = make_engine(shop.url, pooled=False)
    idle = held.connect()
    idle.execute(text("SELECT count(*) FROM products")).scalar()
    try:
        with Reader(shop.url) as reader:
            started = time.monotonic()
            result = restore(
                shop.platform.sessions,
                shop.storage,
                shop.platform.settings,
                plan,
                confirm=plan.confirm_name,
                actor="cli:test",
            )
            seconds = time.monotonic() - started
            reads_before = reader.reads
            deadline = time.monotonic() + 10
            while reader.reads <= reads_before:  # it reads the restored database afterwards
                assert time.monotonic() < deadline, "the reader never read again"
                time.sleep(0.02)
        with pytest.raises(DBAPIError, match="terminat"):
            idle.execute(text("SELECT 1"))
    finally:
        idle.invalidate()
        held.dispose()
    assert len(reader.sessions) >= 2  # its session was ended by the switch; it reconnected

    assert seconds < 30, f"the switch took {seconds:.1f} s"
    assert result.safety_backup_id is not None
    assert _skus(shop) == ["A-1", "A-2", "A-3"]
    assert leftovers(shop.url) == []
    assert database_exists(shop.url)
    assert _block(shop) is None
    add_products(shop, "AFTER-1")
    assert _skus(shop) == ["A-1", "A-2", "A-3", "AFTER-1"]
