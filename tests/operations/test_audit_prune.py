"""The audit and usage logs' retention: only what is older than its cut-off goes, in bounded
batches, and the prune itself is audited."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenantry.db.billing.models import BillingAuditLog
from tenantry.db.master.models import ApiUsageLog, AuditLog
from tenantry.operations import audit_prune, work
from tenantry.runtime import Platform
from tenantry.services import audit, stores
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]

NOW = datetime.now(UTC)


def _aged(platform: Platform, days: list[int]) -> None:
    """Audit entries (master and billing) and usage rows this many days old."""
    with platform.sessions.begin() as master, platform.billing_sessions.begin() as billing:
        store = stores.create_store(master, slug="kept-shop", name="Kept", actor="cli:test")
        master.flush()
        for age in days:
            when = NOW - timedelta(days=age)
            master.add(
                AuditLog(
                    actor="cli:test",
                    action=f"test.{age}",
                    target_type="test",
                    details={},
                    created_at=when,
                )
            )
            billing.add(
                BillingAuditLog(
                    app_id="acme",
                    actor="key:x",
                    action=f"test.{age}",
                    target_type="test",
                    details={},
                    created_at=when,
                )
            )
            master.add(ApiUsageLog(store_id=store.id, endpoint="/x", method="GET", created_at=when))


def _ages(session: Session, model: type[AuditLog] | type[BillingAuditLog]) -> list[str]:
    rows = session.scalars(select(model.action).where(model.action.startswith("test.")))
    return sorted(rows)


def _usage(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(ApiUsageLog)) or 0


def test_prune_removes_only_what_is_older_than_its_retention(platform: Platform) -> None:
    # 400 days for the audit logs, 90 for usage (the defaults)
    _aged(platform, [1, 89, 91, 399, 401, 800])

    dry = audit_prune.prune(
        platform.sessions, platform.billing_sessions, platform.settings, actor="cli:a", dry_run=True
    )
    assert (dry.audit_logs, dry.billing_audit_logs, dry.api_usage_logs) == (2, 2, 4)
    with platform.sessions() as master:
        assert len(_ages(master, AuditLog)) == 6  # a dry run deletes nothing
        assert _usage(master) == 6

    done = audit_prune.prune(
        platform.sessions, platform.billing_sessions, platform.settings, actor="cli:a", batch=1
    )

    assert (done.audit_logs, done.billing_audit_logs, done.api_usage_logs) == (2, 2, 4)
    assert done.complete
    kept = ["test.1", "test.399", "test.89", "test.91"]
    with platform.sessions() as master, platform.billing_sessions() as billing:
        assert _ages(master, AuditLog) == kept
        assert _ages(billing, BillingAuditLog) == kept
        assert _usage(master) == 2
        entry = master.scalars(select(AuditLog).where(AuditLog.action == "audit.prune")).one()
    assert (entry.actor, entry.outcome) == ("cli:a", "succeeded")
    assert entry.details["audit_logs"] == 2
    assert entry.details["api_usage_logs"] == 4


def test_the_scheduler_prunes_in_bounded_batches(platform: Platform) -> None:
    _aged(platform, [500] * 3)
    report = audit_prune.prune(
        platform.sessions,
        platform.billing_sessions,
        platform.settings,
        actor=audit.SCHEDULER,
        batch=1,
        max_batches=2,
    )
    assert (report.audit_logs, report.complete) == (2, False)  # the next tick goes on
    finished = work.retention_tick(platform)
    assert (finished.audit_logs, finished.billing_audit_logs, finished.api_usage_logs) == (1, 1, 1)
    idle = work.retention_tick(platform)
    assert idle.total == 0
    with platform.sessions() as master:
        prunes = master.scalars(select(AuditLog).where(AuditLog.action == "audit.prune")).all()
    # recorded when something went, not every idle minute
    assert sorted((p.actor, p.details["audit_logs"]) for p in prunes) == [
        ("scheduler", 1),
        ("scheduler", 2),
    ]
