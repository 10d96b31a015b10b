"""Async engines on stores' databases, kept as the sync :class:`TenantRouter` keeps its own.

The same rules: at most ``max_engines`` engines (least recently used disposed first), an
entry valid for one ``connection_version`` of its store, the database's identity checked
once per engine against the instance master recorded. The caller looks the store up in
master and checks its status (:class:`~tenantry.services.routing.StoreRoute`); this cache
only ever touches the store's own database, on the event loop. Shared-schema stores share
one async engine per shared database, each through its own view (:mod:`tenantry.db.shared_routing`:
role, search path and identity entered on every checkout, reset on return).
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantry.db import shared_routing
from tenantry.db.async_engines import make_async_engine
from tenantry.db.identity import expect
from tenantry.db.schemas import Role
from tenantry.db.urls import mask
from tenantry.services.routing import StoreRoute


@dataclass
class _Entry:
    engine: AsyncEngine
    version: int


class AsyncTenantRouter:
    """Hands out async engines on stores' databases (one event loop's worth)."""

    def __init__(
        self, *, max_engines: int, pool_size: int, statement_timeout_ms: int | None
    ) -> None:
        self._max = max_engines
        self._pool_size = pool_size
        self._statement_timeout_ms = statement_timeout_ms
        self._entries: OrderedDict[uuid.UUID, _Entry] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Engines held now."""
        with self._lock:
            return len(self._entries)

    async def engine(self, route: StoreRoute) -> AsyncEngine:
        """The async engine of ``route``'s store database, opened (and its identity
        checked) on first use or after the store's connection changed."""
        if route.shared is not None:
            return await self._shared_view(route)
        with self._lock:
            entry = self._entries.get(route.store_id)
            if entry is not None and entry.version == route.connection_version:
                self._entries.move_to_end(route.store_id)
                return entry.engine
        engine = make_async_engine(
            route.url,
            pool_size=self._pool_size,
            statement_timeout_ms=self._statement_timeout_ms,
            transaction_pooler=route.pooled,
        )
        try:
            async with engine.connect() as conn:
                await conn.run_sync(_check_identity, route)
        except BaseException:
            await engine.dispose()
            raise
        with self._lock:
            stale = self._entries.pop(route.store_id, None)
            self._entries[route.store_id] = _Entry(engine, route.connection_version)
            doomed = [stale.engine] if stale else []
            while len(self._entries) > self._max:
                doomed.append(self._entries.popitem(last=False)[1].engine)
        for old in doomed:
            await old.dispose()
        return engine

    async def _shared_view(self, route: StoreRoute) -> AsyncEngine:
        """The store's view of its shared database's async engine (one per database, in the
        same LRU as own databases' engines); the identity is checked on every checkout."""
        assert route.shared is not None
        key = shared_routing.pool_key(route.url)
        doomed: list[AsyncEngine] = []
        with self._lock:
            stale = self._entries.pop(route.store_id, None)  # was an own database
            if stale is not None:
                doomed.append(stale.engine)
            entry = self._entries.get(key)
            if entry is None:
                engine = make_async_engine(
                    route.url,
                    pool_size=self._pool_size,
                    statement_timeout_ms=self._statement_timeout_ms,
                )
                shared_routing.install_async(engine)
                entry = self._entries[key] = _Entry(engine, 0)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                doomed.append(self._entries.popitem(last=False)[1].engine)
        for old in doomed:
            await old.dispose()
        return shared_routing.tenant_async_view(entry.engine, route.shared)

    async def dispose_all(self) -> None:
        """Dispose every engine (call it from the loop that used them)."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            await entry.engine.dispose()


def _check_identity(conn: Connection, route: StoreRoute) -> None:
    expect(
        conn,
        Role.TENANT,
        where=f"{mask(route.url)} (store {route.slug!r}'s database)",
        instance_id=route.instance_id,
        why=f"store {route.slug!r}'s connection leads there, not to its own database, so it "
        "is not served",
        hint="Someone changed the database behind the connection: check it before serving "
        "this store again.",
    )
