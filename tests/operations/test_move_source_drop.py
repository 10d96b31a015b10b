"""The scheduler drops the sources completed moves kept, once the keep period is over: bounded
per tick, one scheduler at a time, audited, each source once; ``stores moves list`` then says
``dropped``. Sources on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL

from tenantry.db.admin import database_exists
from tenantry.db.master.models import AuditLog, StoreMove
from tenantry.db.types import utcnow
from tenantry.operations import work
from tenantry.operations.kit import OperationKit
from tenantry.operations.move_source_drop import SOURCE_DROP_LOCK, drop_due_sources
from tenantry.runtime import Platform
from tenantry.services.move_history import list_moves, move_row
from tests.conftest import require_server
from tests.platform_fixtures import platform, settings
from tests.services.test_moves import cleanup, mover, provision, register, store_url

__all__ = ["cleanup", "platform", "settings"]


def _exists(url: URL) -> bool:
    return database_exists(url)


def _moved(platform: Platform, backend: str, slugs: list[str], **settings: int) -> list[URL]:
    """The stores ``slugs`` made on ``backend`` (a SQLite file, or server ``from``) and moved
    to server ``to``; their source URLs."""
    target = "postgresql" if backend == "sqlite" else backend
    register(platform, "to", target)
    if backend != "sqlite":
        register(platform, "from", backend)
    sources = []
    moving = mover(platform)
    if settings:
        moving.settings = platform.settings.model_copy(update=settings)
    for slug in slugs:
        provision(platform, slug, server=None if backend == "sqlite" else "from")
        sources.append(store_url(platform, slug))
        moved = moving.move(slug, "to")
        assert moved.status == "completed", moved.error
    return sources


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"])
def test_kept_sources_are_dropped_after_the_keep_period_bounded_per_tick(
    platform: Platform, cleanup: None, server_slug: str, backend: str
) -> None:
    require_server("postgresql" if backend == "sqlite" else backend)
    slugs = [f"{server_slug}-1", f"{server_slug}-2"]
    sources = _moved(platform, backend, slugs)
    assert all(_exists(url) for url in sources)
    kit = OperationKit.from_settings(platform.sessions, platform.settings)

    assert drop_due_sources(platform.sessions, platform.box, kit) == []  # kept 7 days
    assert all(_exists(url) for url in sources)
    later = utcnow() + timedelta(days=8)
    other = OperationKit.from_settings(platform.sessions, platform.settings)
    other.acquire_lock(SOURCE_DROP_LOCK)  # another scheduler is dropping: this one skips
    assert drop_due_sources(platform.sessions, platform.box, kit, now=later) == []
    other.release_lock(SOURCE_DROP_LOCK)

    first = drop_due_sources(platform.sessions, platform.box, kit, now=later, limit=1)
    second = drop_due_sources(platform.sessions, platform.box, kit, now=later, limit=1)
    third = drop_due_sources(platform.sessions, platform.box, kit, now=later, limit=1)

    assert [d.outcome for d in first + second] == ["dropped", "dropped"]
    assert third == []  # each source once
    assert {d.slug for d in first + second} == set(slugs)
    assert not any(_exists(url) for url in sources)
    assert all(_exists(store_url(platform, slug)) for slug in slugs)  # the stores' own stay
    with platform.sessions() as session:
        rows = [move_row(m) for m in list_moves(session)]
        assert {r["source"] for r in rows} == {"dropped"}
        assert all(r["source_dropped_at"] for r in rows)
        audited = session.scalars(
            select(AuditLog).where(AuditLog.action == "store.move.source_dropped")
        ).all()
        assert sorted(a.target_id or "" for a in audited) == sorted(slugs)
        assert all("password" not in str(a.details).lower() for a in audited)


def test_the_worker_tick_drops_a_source_kept_zero_days(
    platform: Platform, cleanup: None, server_slug: str
) -> None:
    require_server("postgresql")
    (source,) = _moved(platform, "postgresql", [server_slug], move_keep_source_days=0)

    dropped = work.move_source_tick(platform)

    assert [(d.slug, d.outcome) for d in dropped] == [(server_slug, "dropped")]
    assert not _exists(source)
    with platform.sessions() as session:
        (move,) = session.scalars(select(StoreMove)).all()
        assert move.keep_source_until is None
        assert move.details["source_drop"] == "dropped"
    assert work.move_source_tick(platform) == []
