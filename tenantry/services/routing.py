"""Routing each request to its store's database (seed 001 ``ConnectionManager``).

Engines live in a bounded LRU cache: at most ``max_engines`` at once, a small pool each, idle
ones disposed. An entry is valid for one ``connection_version`` of its store; suspending,
rotating credentials or moving a store bumps the version in master, so every process drops
its stale engine on the next request without being told. Ten thousand registered stores
mean at most ``max_engines`` pools.
"""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db import shared_routing
from tenantry.db.connection_budget import ConnectionBudget, server_key
from tenantry.db.engines import connect, make_engine, writer
from tenantry.db.identity import expect
from tenantry.db.master.models import DatabaseServer, DatabaseStatus, Store
from tenantry.db.schemas import Role
from tenantry.db.shared_routing import SharedTenant
from tenantry.db.tenant_sessions import TenantSession
from tenantry.db.urls import mask
from tenantry.errors import StoreSuspended, StoreUnavailable
from tenantry.observability import metrics
from tenantry.services.connections import tenant_url
from tenantry.services.server_pooler import pooler_url, through_pooler
from tenantry.services.stores import active_connection


@dataclass
class _Entry:
    engine: Engine
    version: int
    last_used: float


@dataclass
class _View:
    """A shared-schema store's view of its shared database's pool (kept in ``_entries``)."""

    engine: Engine
    version: int
    pool: uuid.UUID


@dataclass(frozen=True)
class StoreRoute:
    """Where an active store's database is, as master says now (the URL holds its runtime
    login's password: never show it)."""

    store_id: uuid.UUID
    slug: str
    connection_version: int
    url: URL
    instance_id: str | None
    #: A shared-schema store's schema and role in its shared database (``None``: its own
    #: database).
    shared: SharedTenant | None = None
    #: Whether ``url`` leads through a transaction-mode pooler (PgBouncer) in front of the
    #: store's server: no session state (prepared statements, startup options) is relied on.
    pooled: bool = False


@dataclass(frozen=True)
class RouterStats:
    """How the cache is doing."""

    engines: int
    max_engines: int
    hits: int
    misses: int
    evictions: int


class TenantRouter:
    """Hands out sessions and connections on a store's own database."""

    def __init__(
        self,
        box: SecretBox,
        *,
        max_engines: int = 64,
        pool_size: int = 2,
        idle_seconds: float = 300.0,
        statement_timeout_ms: int | None = None,
        budget: ConnectionBudget | None = None,
    ) -> None:
        self._box = box
        self._budget = budget
        if budget is not None:
            budget.set_reclaim(self._reclaim)
        # Every engine opened under the budget while anyone still holds it, cached or not
        # (dropped from the cache while a caller was still using it): their idle
        # connections are closed when the budget is full (see _reclaim).
        self._bound: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._statement_timeout_ms = statement_timeout_ms
        self._max = max_engines
        self._pool_size = pool_size
        self._idle = idle_seconds
        # Own databases' engines by store id, and shared databases' pools by pool key: the
        # LRU bound counts both; shared-schema stores' views of a pool are not engines.
        self._entries: OrderedDict[uuid.UUID, _Entry] = OrderedDict()
        self._views: dict[uuid.UUID, _View] = {}
        self._lock = threading.Lock()
        self._hits = self._misses = self._evictions = 0

    # ------------------------------------------------------------------ public

    def engine(self, master: Session, store: Store) -> Engine:
        """The engine of ``store``'s database; refuses a store that is not active.

        ``store`` is the caller's fresh row from master (it carries the status and the
        connection version the cache is checked against).
        """
        if store.database_status != DatabaseStatus.ACTIVE:
            self.evict(store.id)
            raise unavailable(store)
        now = time.monotonic()
        with self._lock:
            view = self._views.get(store.id)
            pool = self._entries.get(view.pool) if view is not None else None
            if view is not None and pool is not None and view.version == store.connection_version:
                pool.last_used = now
                self._entries.move_to_end(view.pool)
                self._hits += 1
                return view.engine
            entry = self._entries.get(store.id)
            if entry is not None and entry.version == store.connection_version:
                entry.last_used = now
                self._entries.move_to_end(store.id)
                self._hits += 1
                return entry.engine
        route = self.route(master, store)
        if route.shared is not None:
            return self._shared_view(route, now)
        engine = self._open(route)
        with self._lock:
            self._views.pop(store.id, None)  # was a shared-schema store
            stale = self._entries.pop(store.id, None)
            self._entries[store.id] = _Entry(engine, store.connection_version, now)
            self._misses += 1
            doomed = [stale.engine] if stale else []
            dropped = self._shrink(now)
            doomed += dropped
            held = len(self._entries)
        # A stale entry replaced counts as an eviction, as one dropped by evict() does.
        metrics.tenant_engines(held, evicted=len(dropped) + (1 if stale else 0))
        for old in doomed:
            self._retire(old)
        return engine

    @contextmanager
    def session(self, master: Session, store: Store, *, write: bool = False) -> Iterator[Session]:
        """An ORM session on the store's database; the caller commits.

        ``write``: its transactions take a SQLite file's write lock when they begin (see
        :func:`~tenantry.db.engines.writer`), so concurrent writers to one store queue
        instead of failing; other backends are unaffected."""
        engine = self.engine(master, store)
        bind = writer(engine) if write and engine.dialect.name == "sqlite" else engine
        with TenantSession(bind, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def connection(self, master: Session, store: Store) -> Iterator[Connection]:
        """A Core connection on the store's database; the caller commits."""
        with connect(self.engine(master, store)) as conn:
            yield conn

    def evict(self, store_id: uuid.UUID) -> None:
        """Forget (and dispose) the engine of a store (a shared-schema store's view is
        forgotten; its shared database's pool serves other stores and stays)."""
        with self._lock:
            self._views.pop(store_id, None)
            entry = self._entries.pop(store_id, None)
            if entry is not None:
                self._evictions += 1
            held = len(self._entries)
        if entry is not None:
            metrics.tenant_engines(held, evicted=1)
            self._retire(entry.engine)

    def dispose_all(self) -> None:
        """Dispose every engine (at shutdown)."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
            self._views.clear()
            retired = [e for e in self._bound if e not in {x.engine for x in entries}]
        if entries:
            metrics.tenant_engines(0)
        for entry in entries:
            entry.engine.dispose()
        for engine in retired:
            engine.dispose()

    def stats(self) -> RouterStats:
        """Cache size and hit counters."""
        with self._lock:
            return RouterStats(
                len(self._entries), self._max, self._hits, self._misses, self._evictions
            )

    # ------------------------------------------------------------------ internals

    def _retire(self, engine: Engine) -> None:
        """Close an evicted engine's idle connections (the pool stays usable: a caller may
        still hold the engine; under a budget, :meth:`_reclaim` closes what it returns)."""
        engine.pool.dispose()

    def _reclaim(self, key: str) -> int:
        """Close idle pooled connections to server ``key`` (engines no longer cached first,
        then the least recently used); how many were closed. The budget calls it when full."""
        with self._lock:
            live = [e.engine for e in self._entries.values() if server_key(e.engine.url) == key]
            cached = set(live)
            retired = [e for e in self._bound if e not in cached and server_key(e.url) == key]
        closed = 0
        for engine in retired:
            closed += _checked_in(engine)
            engine.pool.dispose()
        for engine in live:
            if closed:
                break
            idle = _checked_in(engine)
            if idle:
                engine.pool.dispose()
                closed += idle
        return closed

    def _shrink(self, now: float) -> list[Engine]:
        doomed: list[Engine] = []
        while self._entries:
            oldest_id, oldest = next(iter(self._entries.items()))
            if len(self._entries) > self._max or now - oldest.last_used > self._idle:
                del self._entries[oldest_id]
                self._evictions += 1
                for store_id in [k for k, v in self._views.items() if v.pool == oldest_id]:
                    del self._views[store_id]
                doomed.append(oldest.engine)
            else:
                break
        return doomed

    def route(self, master: Session, store: Store) -> StoreRoute:
        """Where ``store``'s database is; refuses a store that is not active, as
        :meth:`engine` does (async engines are opened from this, see ``async_routing``)."""
        if store.database_status != DatabaseStatus.ACTIVE:
            raise unavailable(store)
        config = active_connection(master, store)
        if config is None:
            raise StoreUnavailable(
                f"store {store.slug!r} has no database yet.",
                f"Provision it: tenantry provision {store.slug} --new.",
            )
        url = tenant_url(self._box, config)
        shared = pooler = None
        if config.db_schema:
            # Never through a transaction-mode pooler: every checkout's SET ROLE and
            # search_path are session state.
            shared = SharedTenant(
                store.slug, config.db_schema, str(config.config_data["role"]), config.instance_id
            )
        elif config.database_server_id is not None:
            server = master.get(DatabaseServer, config.database_server_id)
            pooler = pooler_url(self._box, server) if server is not None else None
        return StoreRoute(
            store.id,
            store.slug,
            store.connection_version,
            through_pooler(url, pooler) if pooler is not None else url,
            config.instance_id,
            shared,
            pooled=pooler is not None,
        )

    def _shared_view(self, route: StoreRoute, now: float) -> Engine:
        """The view of ``route``'s shared database pool for its store (the pool opened on
        first use); every checkout enters the store's role and schema and checks its
        identity (:mod:`tenantry.db.shared_routing`)."""
        assert route.shared is not None
        key = shared_routing.pool_key(route.url)
        doomed: list[Engine] = []
        with self._lock:
            pool = self._entries.get(key)
            stale = self._entries.pop(route.store_id, None)  # was an own database
            if stale is not None:
                doomed.append(stale.engine)
            if pool is None:
                engine = make_engine(
                    route.url,
                    pool_size=self._pool_size,
                    statement_timeout_ms=self._statement_timeout_ms,
                    role=Role.TENANT.value,
                )
                shared_routing.install(engine)
                self._bind(engine)
                pool = self._entries[key] = _Entry(engine, 0, now)
                self._misses += 1
            else:
                pool.last_used = now
                self._entries.move_to_end(key)
            view = shared_routing.tenant_view(pool.engine, route.shared)
            self._views[route.store_id] = _View(view, route.connection_version, key)
            doomed += self._shrink(now)
            held = len(self._entries)
        metrics.tenant_engines(held, evicted=len(doomed))
        for old in doomed:
            self._retire(old)
        # The identity is checked on this first checkout, as on every later one.
        with connect(view) as conn:
            conn.rollback()
        return view

    def _bind(self, engine: Engine) -> None:
        """Count ``engine``'s connections in the per-server budget, if there is one."""
        if self._budget is not None and engine.dialect.name != "sqlite":
            self._budget.bind(engine)
            self._bound.add(engine)

    def _open(self, route: StoreRoute) -> Engine:
        engine = make_engine(
            route.url,
            pool_size=self._pool_size,
            statement_timeout_ms=self._statement_timeout_ms,
            role=Role.TENANT.value,
            transaction_pooler=route.pooled,
        )
        with self._lock:
            self._bind(engine)
        try:
            # Checked once per engine: the database must be the one master says it is.
            with connect(engine) as conn:
                expect(
                    conn,
                    Role.TENANT,
                    where=f"{mask(engine.url)} (store {route.slug!r}'s database)",
                    instance_id=route.instance_id,
                    why=f"store {route.slug!r}'s connection leads there, not to its own "
                    "database, so it is not served",
                    hint="Someone changed the database behind the connection: check it before "
                    "serving this store again.",
                )
        except BaseException:
            engine.dispose()
            raise
        return engine


def unavailable(store: Store) -> StoreUnavailable:
    """The error for a store whose database does not serve now (suspended, provisioning…)."""
    status = store.database_status
    if status == DatabaseStatus.SUSPENDED:
        return StoreSuspended(
            f"store {store.slug!r} is suspended.",
            f"Its traffic is refused until it is resumed (tenantry stores resume {store.slug}).",
        )
    if status == DatabaseStatus.PROVISIONING:
        return StoreUnavailable(f"store {store.slug!r} is still being provisioned.")
    return StoreUnavailable(f"store {store.slug!r} is not available ({status}).")


def _checked_in(engine: Engine) -> int:
    return int(getattr(engine.pool, "checkedin", lambda: 0)())
