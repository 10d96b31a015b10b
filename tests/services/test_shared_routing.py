"""Routing shared-schema stores: one pool per shared database, each checkout entering the
store's role and schema (identity checked), each return resetting them."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.exc import ProgrammingError

from tenantry.db.engines import make_engine
from tenantry.db.shared_schemas import pool_login
from tenantry.db.tenant.store.models import Product
from tenantry.db.urls import parse_url
from tenantry.errors import WrongDatabase
from tenantry.operations.provision_shared import SharedProvisioned, provision_shared_store
from tenantry.runtime import Platform
from tenantry.services import stores
from tests.operations.test_provision_shared import make_store
from tests.platform_fixtures import platform, settings
from tests.shared_schema_fixtures import SharedDb, shared_db
from tests.tenantry_fixtures import new_slug

__all__ = ["platform", "settings", "shared_db"]

THREADS = 8
ROUNDS = 10


def two_stores(platform: Platform, shared_db: SharedDb) -> list[SharedProvisioned]:
    made = []
    for label in ("rt-a", "rt-b"):
        slug = new_slug(label)
        make_store(platform, slug)
        made.append(provision_shared_store(platform, slug, shared_db.target, actor="cli:test"))
    return made


def engine_of(platform: Platform, slug: str) -> Engine:
    with platform.sessions() as master:
        return platform.router.engine(master, stores.get_store(master, slug))


def returned_connection_state(engine: Engine) -> tuple[str, list[str], str]:
    """What a connection checked straight out of the pool (no store entered) is: its user,
    its schemas on the path, and its search_path setting."""
    raw = engine.pool.connect()
    try:
        cur = raw.cursor()
        cur.execute("SELECT current_user, current_schemas(false), current_setting('search_path')")
        row = cur.fetchone()
        assert row is not None
        user, schemas, path = row
        cur.close()
        raw.rollback()
        return str(user), list(schemas), str(path)
    finally:
        raw.close()


def test_threads_alternating_two_stores_on_one_pool_see_only_their_own_rows(
    platform: Platform, shared_db: SharedDb
) -> None:
    a, b = two_stores(platform, shared_db)
    engines = {s.slug: engine_of(platform, s.slug) for s in (a, b)}
    # One pool for the shared database: both stores' engines are views of it.
    assert engines[a.slug].pool is engines[b.slug].pool
    assert platform.router.stats().engines == 1
    leaks: list[str] = []
    failures: list[BaseException] = []
    written: Counter[str] = Counter()
    lock = threading.Lock()

    def hammer(worker: int) -> None:
        try:
            for n in range(ROUNDS):
                slug = (a.slug, b.slug)[(worker + n) % 2]  # every thread alternates
                engine = engine_of(platform, slug)
                with engine.begin() as conn:
                    conn.execute(
                        insert(Product).values(
                            sku=f"{slug}-{worker}-{n}", slug=f"{slug}-{worker}-{n}", name="p"
                        )
                    )
                with engine.connect() as conn:
                    seen = list(conn.scalars(select(Product.sku)))
                    schemas = conn.execute(text("SELECT current_schemas(false)")).scalar_one()
                with lock:
                    written[slug] += 1
                    leaks.extend(f"{slug} saw {s}" for s in seen if not s.startswith(slug))
                    if list(schemas) != [a.schema if slug == a.slug else b.schema]:
                        leaks.append(f"{slug} ran with search path {schemas}")
        except BaseException as exc:  # reported below
            with lock:
                failures.append(exc)

    threads = [threading.Thread(target=hammer, args=(w,)) for w in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert leaks == []
    assert written[a.slug] == written[b.slug] == THREADS * ROUNDS // 2
    for store in (a, b):
        with engine_of(platform, store.slug).connect() as conn:
            count = conn.scalar(select(Product.sku).where(Product.sku.like("%-%-%")).limit(1))
            assert count is not None
            mine = conn.scalars(select(Product.sku)).all()
        assert len([s for s in mine if s.startswith(store.slug + "-")]) == THREADS * ROUNDS // 2
    # A returned connection is reset: the pool login, no schema on its path.
    user, schemas, path = returned_connection_state(engines[a.slug])
    assert user == pool_login(shared_db.database)
    assert schemas == []
    assert path in ('""', "")


def test_a_store_role_cannot_read_another_stores_schema(
    platform: Platform, shared_db: SharedDb
) -> None:
    a, b = two_stores(platform, shared_db)
    with engine_of(platform, a.slug).connect() as conn:
        assert conn.scalar(text("SELECT current_user")) != pool_login(shared_db.database)
        with pytest.raises(ProgrammingError, match="permission denied"):
            conn.execute(text(f'SELECT count(*) FROM "{b.schema}".products'))
        conn.rollback()
        # The pool login itself (NOINHERIT) holds nothing: not even its own store's tables.
        conn.execute(text("RESET ROLE"))
        for schema in (a.schema, b.schema):
            with pytest.raises(ProgrammingError, match="permission denied"):
                conn.execute(text(f'SELECT count(*) FROM "{schema}".products'))
            conn.rollback()
            conn.execute(text("RESET ROLE"))


def test_the_identity_is_checked_on_every_checkout(platform: Platform, shared_db: SharedDb) -> None:
    from tests.services.test_moves import admin_url

    a, _ = two_stores(platform, shared_db)
    engine = engine_of(platform, a.slug)
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT 1")) == 1
    admin = make_engine(parse_url(admin_url("postgresql")).set(database=shared_db.database))
    try:
        with admin.begin() as conn:
            conn.execute(
                text(f"UPDATE \"{a.schema}\".tenantry_identity SET instance_id = 'someone-else'")
            )
    finally:
        admin.dispose()
    # The cached engine (a view of the pool) is refused on its next checkout.
    with pytest.raises(WrongDatabase, match="not served"), engine.connect():
        pass
    user, schemas, _ = returned_connection_state(engine)
    assert user == pool_login(shared_db.database)
    assert schemas == []
