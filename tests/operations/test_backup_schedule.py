"""The backup scheduler's lock is an operation lock: one tick at a time across workers."""

from __future__ import annotations

from tenantry.backup.storage import storage_for
from tenantry.db.master.models import OperationLock
from tenantry.operations.backup_schedule import LOCK, tick
from tenantry.operations.kit import OperationKit
from tenantry.runtime import Platform
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]


def test_a_tick_skips_while_another_scheduler_holds_the_lock(platform: Platform) -> None:
    p = platform
    other = OperationKit(p.sessions, lease_seconds=600, holder="other-worker:1")
    other.acquire_lock(LOCK)
    report = tick(p.sessions, storage_for(p.settings), p.settings, p.box)
    assert report.skipped == "another scheduler is running"
    assert (report.backed_up, report.verified, report.pruned) == ([], [], [])
    with p.sessions() as session:
        held = session.get(OperationLock, LOCK)
        assert held is not None
        assert held.holder == "other-worker:1"  # the skipping tick took nothing from it
    other.release_lock(LOCK)
    with p.sessions() as session:
        assert session.get(OperationLock, LOCK) is None
