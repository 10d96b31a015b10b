"""The scheduler's usage rollup: the stores due in bounded batches, each measured at most every
TENANTRY_USAGE_REFRESH_MINUTES, one store's failure logged and passed over, one scheduler at a
time across workers."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from tenantry.db.admin import drop_database
from tenantry.db.master.models import Store, UsageMetric
from tenantry.db.urls import backend_of
from tenantry.errors import Conflict
from tenantry.operations import usage_rollup, work
from tenantry.operations.kit import OperationKit
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.connections import migrator_url
from tests.platform_fixtures import platform, settings
from tests.services.test_usage import provisioned, tenant_backend

__all__ = ["platform", "settings", "tenant_backend"]


def measured_at(platform: Platform) -> dict[str, datetime | None]:
    with platform.sessions() as session:
        return {s.slug: s.storage_measured_at for s in session.scalars(select(Store))}


def test_due_stores_are_measured_in_batches_and_again_after_the_interval(
    platform: Platform,
) -> None:
    for slug in ("due-a", "due-b"):
        provisioned(platform, slug, "sqlite")
    now = datetime.now(UTC).replace(hour=12)  # well after midnight: only today's rows

    first = usage_rollup.rollup_due(platform, now=now, limit=1)
    second = usage_rollup.rollup_due(platform, now=now + timedelta(minutes=1), limit=1)
    third = usage_rollup.rollup_due(platform, now=now + timedelta(minutes=2), limit=1)

    assert [o.slug for o in first] == ["due-a"]
    assert [o.slug for o in second] == ["due-b"]
    assert third == []  # both measured less than an hour ago
    assert all(o.storage_bytes and o.error is None for o in first + second)
    assert usage_rollup.rollup_due(platform, now=now + timedelta(minutes=59)) == []
    again = usage_rollup.rollup_due(platform, now=now + timedelta(minutes=62))
    assert sorted(o.slug for o in again) == ["due-a", "due-b"]


def test_one_store_failing_is_logged_and_the_others_are_measured(
    platform: Platform, tenant_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    ids = {slug: provisioned(platform, slug, tenant_backend) for slug in ("ok-1", "broken", "ok-2")}
    with platform.sessions() as session:
        config = stores.active_connection(session, stores.get_store(session, "broken"))
        assert config is not None
        url = migrator_url(session, platform.box, config)
    if backend_of(url) == "sqlite":
        assert url.database
        platform.router.evict(ids["broken"])
        os.remove(url.database)
    else:
        drop_database(url)

    with caplog.at_level(logging.WARNING, logger="tenantry.usage"):
        outcomes = usage_rollup.rollup_many(platform, usage_rollup.active_stores(platform))

    by_slug = {o.slug: o for o in outcomes}
    assert by_slug["ok-1"].error is None
    assert by_slug["ok-2"].error is None
    assert by_slug["broken"].error is not None
    assert "broken" in caplog.text
    assert "usage rollup of store broken failed" in caplog.text
    times = measured_at(platform)
    assert times["ok-1"] is not None
    assert times["ok-2"] is not None
    assert times["broken"] is None
    with platform.sessions() as session:
        written = set(session.scalars(select(UsageMetric.store_id)))
    assert written == {ids["ok-1"], ids["ok-2"]}


def test_one_scheduler_at_a_time_measures(platform: Platform) -> None:
    store_id = provisioned(platform, "tick-shop", "sqlite")
    other = OperationKit.from_settings(platform.sessions, platform.settings, holder="other")
    other.acquire_lock(usage_rollup.USAGE_LOCK)
    try:
        assert work.usage_tick(platform) == []  # another worker's scheduler is at it
        assert measured_at(platform)["tick-shop"] is None
    finally:
        other.release_lock(usage_rollup.USAGE_LOCK)

    outcomes = work.usage_tick(platform)

    assert [(o.slug, o.error) for o in outcomes] == [("tick-shop", None)]
    assert work.usage_tick(platform) == []  # measured just now: not due
    with platform.sessions() as session:
        store = session.get(Store, store_id)
        assert store is not None
        assert store.storage_used_bytes > 0


def test_the_backup_scheduler_tick_measures_usage(platform: Platform) -> None:
    provisioned(platform, "sched-shop", "sqlite")
    work.backup_tick(platform)
    assert measured_at(platform)["sched-shop"] is not None


def test_a_store_without_an_active_database_is_refused_clearly(platform: Platform) -> None:
    with platform.sessions.begin() as session:
        store = stores.create_store(session, slug="bare-shop", name="Bare", actor="cli:test")
        store_id = store.id
    with pytest.raises(Conflict, match="has no active database"):
        usage_rollup.rollup_store(platform, store_id)
    assert usage_rollup.active_stores(platform) == []
