"""The usage rollup: each active store's usage rows (:mod:`tenantry.services.usage`),
``stores.storage_used_bytes`` and its product and order counters
(:mod:`tenantry.services.counters`), measured from its database and master's API log.

A pass over a store measures its database once (through the migrator URL where the store has
one: the runtime login may not see everything) and writes today's row so far; the first pass
after midnight UTC (the store not measured since) also writes yesterday's row, with the
numbers the day ended with. The scheduler (:func:`tenantry.operations.work.usage_tick`)
takes the stores due (not measured for ``TENANTRY_USAGE_REFRESH_MINUTES``, or not since
midnight) a bounded batch per tick, under one lock across workers; ``tenantry stores usage
--refresh`` runs a pass now. Each store is written under its own lock
(``usage:<store id>``), so a scheduler and a command never write one row twice at once.
One store's failure is logged (WARNING, with its slug) and the others go on.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import case, or_, select
from sqlalchemy.exc import SQLAlchemyError

from tenantry.db.engines import connect, make_engine, sqlite_path
from tenantry.db.master.models import DatabaseStatus, IntegrationConfig, Store
from tenantry.db.sizes import database_bytes
from tenantry.db.urls import mask
from tenantry.errors import Conflict, DatabaseUnreachable, TenantryError
from tenantry.operations.kit import OperationKit
from tenantry.runtime import Platform
from tenantry.services import stores, usage
from tenantry.services.connections import migrator_url
from tenantry.services.counters import apply_counters, count_on

log = logging.getLogger("tenantry.usage")

#: Stores one scheduler tick measures at most; the next tick goes on with the rest.
TICK_BATCH = 25
#: The scheduler's lock: one rollup pass at a time across workers.
USAGE_LOCK = "usage-rollup"
#: How long a pass waits for another one writing the same store.
STORE_LOCK_WAIT_S = 30.0


@dataclass(frozen=True)
class Rolled:
    """One store's pass: the days written and the bytes measured, or why it failed."""

    slug: str
    days: tuple[date, ...] = field(default=())
    storage_bytes: int | None = None
    error: str | None = None

    def document(self) -> dict[str, Any]:
        """The outcome as JSON."""
        return {
            "store": self.slug,
            "ok": self.error is None,
            "days": [d.isoformat() for d in self.days],
            "storage_bytes": self.storage_bytes,
            "error": self.error,
        }


def _midnight(now: datetime) -> datetime:
    return datetime.combine(now.date(), time.min, tzinfo=UTC)


def _active() -> Any:
    return (
        select(Store.id, Store.slug)
        .join(IntegrationConfig, IntegrationConfig.store_id == Store.id)
        .where(
            IntegrationConfig.is_active.is_(True),
            Store.database_status == DatabaseStatus.ACTIVE,
            Store.deleted_at.is_(None),
        )
    )


def active_stores(platform: Platform) -> list[tuple[uuid.UUID, str]]:
    """Every active store with a database, by slug: (id, slug)."""
    with platform.sessions() as session:
        return [(i, s) for i, s in session.execute(_active().order_by(Store.slug))]


def due_stores(
    platform: Platform, *, now: datetime, every: timedelta, limit: int
) -> list[tuple[uuid.UUID, str]]:
    """Up to ``limit`` active stores not measured for ``every`` or not since midnight UTC,
    the never measured first, then the longest ago."""
    cutoff = max(now - every, _midnight(now))
    measured = Store.storage_measured_at
    query = (
        _active()
        .where(or_(measured.is_(None), measured < cutoff))
        .order_by(case((measured.is_(None), 0), else_=1), measured, Store.slug)
        .limit(limit)
    )
    with platform.sessions() as session:
        return [(i, s) for i, s in session.execute(query)]


def rollup_store(platform: Platform, store_id: uuid.UUID, *, now: datetime | None = None) -> Rolled:
    """Measure store ``store_id`` and write its usage rows (see the module); raises when the
    store has no active database or it cannot be read."""
    moment = now or datetime.now(UTC)
    kit = OperationKit.from_settings(platform.sessions, platform.settings)
    lock = f"usage:{store_id}"
    kit.acquire_lock(lock, wait_s=STORE_LOCK_WAIT_S)
    try:
        with platform.sessions() as session:
            store = stores.get_store(session, store_id)
            config = stores.active_connection(session, store)
            if config is None or store.database_status != DatabaseStatus.ACTIVE:
                raise Conflict(
                    f"store {store.slug!r} has no active database ({store.database_status}).",
                    "Only an active store's usage is measured.",
                )
            url = migrator_url(session, platform.box, config)
            slug, measured = store.slug, store.storage_measured_at
            started_before_today = store.created_at < _midnight(moment)
        days = [moment.date()]
        if started_before_today and (measured is None or measured < _midnight(moment)):
            days.insert(0, moment.date() - timedelta(days=1))  # the day that just ended
        path = sqlite_path(url)
        if path is not None and not path.is_file():  # connecting would create an empty one
            raise DatabaseUnreachable(f"store {slug!r}'s database file {mask(url)} is missing.")
        engine = make_engine(url, pooled=False)
        try:
            with connect(engine) as conn:
                seen = {day: usage.read_tenant_day(conn, day) for day in days}
                storage = database_bytes(conn)
                counters = count_on(conn)
        finally:
            engine.dispose()
        with platform.writer_sessions.begin() as session:
            store = stores.get_store(session, store_id)
            for day in days:
                api = usage.read_api_day(session, store_id, day)
                usage.record_day(session, store, day, seen[day], api, storage)
            usage.record_storage(store, storage, moment)
            apply_counters(session, store_id, counters)  # as the store's database has them
    finally:
        kit.release_lock(lock)
    return Rolled(slug, tuple(days), storage)


def _reason(exc: Exception) -> str:
    if isinstance(exc, TenantryError):
        return str(exc)
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:500]


def rollup_many(
    platform: Platform,
    targets: list[tuple[uuid.UUID, str]],
    *,
    now: datetime | None = None,
    on_done: Callable[[Rolled], object] | None = None,
) -> list[Rolled]:
    """Roll up each of ``targets`` (id, slug) in turn; a store that fails is logged at
    WARNING and recorded in its outcome, and the others go on."""
    done: list[Rolled] = []
    for store_id, slug in targets:
        try:
            outcome = rollup_store(platform, store_id, now=now)
        except (TenantryError, SQLAlchemyError, OSError) as exc:
            outcome = Rolled(slug, error=_reason(exc))
            log.warning("usage rollup of store %s failed: %s", slug, outcome.error)
        done.append(outcome)
        if on_done is not None:
            on_done(outcome)
    return done


def rollup_due(
    platform: Platform,
    *,
    now: datetime | None = None,
    limit: int = TICK_BATCH,
    on_done: Callable[[Rolled], object] | None = None,
) -> list[Rolled]:
    """What a scheduler tick runs: the stores due (see :func:`due_stores`), ``limit`` at most."""
    moment = now or datetime.now(UTC)
    every = timedelta(minutes=platform.settings.usage_refresh_minutes)
    due = due_stores(platform, now=moment, every=every, limit=limit)
    return rollup_many(platform, due, now=moment, on_done=on_done)
