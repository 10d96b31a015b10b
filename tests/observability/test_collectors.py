"""The scrape-time collector: bounded per-tenant series, and a failing read skipped, not fatal."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import update

from tenantry.db.admin import drop_database
from tenantry.db.master.models import DatabaseStatus, Store
from tenantry.observability import exposition
from tenantry.observability.collectors import PlatformCollector
from tenantry.operations.dispatch import InProcessDispatcher
from tenantry.runtime import Platform
from tenantry.services import stores
from tests.observability.scrape import Scrape


def _scrape(platform: Platform) -> Scrape:
    dispatcher = InProcessDispatcher(platform)
    registry = exposition.scrape_registry(PlatformCollector(lambda: platform, lambda: dispatcher))
    return Scrape(exposition.render(registry).decode())


def test_tenant_sizes_are_the_top_n_and_the_sum_of_all(
    backend_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TENANTRY_METRICS_TOP_TENANTS", "5")
    sizes = {f"shop-{i:02d}": (i + 1) * 1_000_000 for i in range(30)}
    with backend_platform.sessions.begin() as session:
        for slug in sizes:
            stores.create_store(session, slug=slug, name=slug, actor="cli:test")
        session.flush()
        for slug, size in sizes.items():
            # Kept current by the usage rollup; here, as it would have measured.
            session.execute(
                update(Store)
                .where(Store.slug == slug)
                .values(storage_used_bytes=size, database_status=DatabaseStatus.ACTIVE)
            )
    found = _scrape(backend_platform)
    per_store = {
        labels["store"]: value
        for labels, value in found.series("tenantry_tenant_database_size_bytes")
    }
    largest = sorted(sizes, key=lambda s: sizes[s], reverse=True)[:5]
    assert per_store == {slug: float(sizes[slug]) for slug in largest}
    assert found.value("tenantry_tenant_databases_size_bytes") == sum(sizes.values())
    assert found.value("tenantry_tenant_databases", status="active") == 30
    # No tenant has a good backup: every one is overdue, the tenant scope never backed up.
    assert found.value("tenantry_backup_tenants_overdue") == 30
    assert found.value("tenantry_backup_last_success_timestamp_seconds", scope="tenant") == 0
    assert found.value("tenantry_fleet_tenants_lagging") == 30  # never migrated by a fleet run


def test_a_family_that_cannot_be_read_is_skipped_and_counted(
    backend_platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    backend_platform.billing_engine.dispose()
    drop_database(backend_platform.settings.billing_url)
    with caplog.at_level(logging.WARNING, logger="tenantry.metrics"):
        found = _scrape(backend_platform)
    # Billing's families are left out; master's are still there.
    assert not found.has("tenantry_webhook_backlog")
    assert not found.has("tenantry_database_size_bytes", database="billing")
    assert found.value("tenantry_collector_errors_total", collector="webhooks") == 1
    assert found.value("tenantry_collector_errors_total", collector="subscriptions") == 1
    assert found.value("tenantry_collector_errors_total", collector="operations") == 0
    assert found.has("tenantry_backup_max_age_seconds", scope="master")
    assert found.has("tenantry_workers_alive")
    assert found.value("tenantry_info") == 1
    warned = [r.getMessage() for r in caplog.records]
    assert any("reading webhooks failed" in m for m in warned), warned
    # Never the URL (a password may be in it).
    assert not any("://" in m for m in warned)
