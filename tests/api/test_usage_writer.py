"""Tenant calls' usage written in shared transactions: every call logged and counted exactly as
one write after another would, each caller back only once its call is committed, a failed
batch raised in its callers (and the writer still working afterwards)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from tenantry.api.usage_writer import UsageWriter
from tenantry.db.master.models import ApiUsageLog, Store
from tenantry.runtime import Platform
from tenantry.services import stores
from tenantry.services.store_data import ApiCall, count_api_calls
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]


def _store(platform: Platform, slug: str) -> uuid.UUID:
    with platform.sessions.begin() as session:
        return stores.create_store(session, slug=slug, name=slug, actor="cli:test").id


def _call(store_id: uuid.UUID, *, at: datetime | None = None, counted: bool = True) -> ApiCall:
    return ApiCall(
        store_id,
        endpoint="/stores/x/products",
        method="GET",
        status_code=200 if counted else 429,
        response_time_ms=1,
        ip_address="127.0.0.1",
        user_agent=None,
        counted=counted,
        at=at or datetime.now(UTC),
    )


def _counters(platform: Platform, store_id: uuid.UUID) -> tuple[int, int]:
    with platform.sessions() as session:
        store = session.get(Store, store_id)
        assert store is not None
        logged = session.scalar(
            select(func.count()).select_from(ApiUsageLog).where(ApiUsageLog.store_id == store_id)
        )
        return store.api_calls_month, int(logged or 0)


def test_concurrent_calls_are_all_logged_and_counted(platform: Platform) -> None:
    a, b = _store(platform, "usage-a"), _store(platform, "usage-b")
    writer = UsageWriter(platform.writer_sessions)
    try:

        def calls(n: int) -> None:
            for i in range(20):
                writer.record(_call(a if (n + i) % 2 else b, counted=i % 10 != 0))

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(calls, range(8)))
    finally:
        writer.close()
    # 160 calls, half each; every tenth refused for the quota: logged, not counted.
    assert _counters(platform, a) == (72, 80)
    assert _counters(platform, b) == (72, 80)


def test_a_batch_across_a_month_turn_counts_as_one_call_after_another(
    platform: Platform,
) -> None:
    store_id = _store(platform, "usage-month")
    month = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    before = month - timedelta(seconds=2)
    with platform.sessions.begin() as session:  # last month's count so far
        session.execute(
            update(Store)
            .where(Store.id == store_id)
            .values(api_calls_month=7, last_activity_at=before - timedelta(hours=1))
        )
        count_api_calls(
            session,
            [
                _call(store_id, at=month + timedelta(seconds=1)),
                _call(store_id, at=before),
                _call(store_id, at=month + timedelta(seconds=2)),
            ],
        )
    # 7 + the one before the turn, then the month starts over with the two after it.
    assert _counters(platform, store_id) == (2, 3)
    with platform.sessions() as session:
        store = session.get(Store, store_id)
        assert store is not None
        assert store.last_activity_at is not None
        assert store.last_activity_at.replace(tzinfo=UTC) == month + timedelta(seconds=2)


def test_a_failed_batch_raises_in_its_callers_and_the_writer_goes_on(platform: Platform) -> None:
    store_id = _store(platform, "usage-fail")
    writer = UsageWriter(platform.writer_sessions)
    try:
        with pytest.raises(Exception, match=r"(?i)foreign key|constraint"):
            writer.record(_call(uuid.uuid4()))  # no such store: nothing is written
        writer.record(_call(store_id))
    finally:
        writer.close()
    assert _counters(platform, store_id) == (1, 1)
    with pytest.raises(RuntimeError, match="closed"):
        writer.record(_call(store_id))
