"""Applying the retention policy: audit entries older than ``TENANTRY_AUDIT_RETENTION_DAYS``
and usage rows older than ``TENANTRY_USAGE_RETENTION_DAYS`` deleted in bounded batches, each
its own transaction; the prune itself audited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from tenantry.db.billing.models import BillingAuditLog
from tenantry.db.master.models import ApiUsageLog, AuditLog
from tenantry.operations import audited
from tenantry.services import audit
from tenantry.services.audit_retention import Aged, count_older, delete_batch
from tenantry.settings import Settings

#: Rows deleted per transaction.
BATCH = 1000


@dataclass
class PruneReport:
    """What a prune deleted (or, dry, would delete) from each log."""

    audit_cutoff: datetime
    usage_cutoff: datetime
    audit_logs: int = 0
    billing_audit_logs: int = 0
    api_usage_logs: int = 0
    dry_run: bool = False
    #: False when ``max_batches`` stopped it with rows left (the next run goes on).
    complete: bool = True

    @property
    def total(self) -> int:
        """Rows deleted in all."""
        return self.audit_logs + self.billing_audit_logs + self.api_usage_logs


def prune(
    sessions: sessionmaker[Session],
    billing_sessions: sessionmaker[Session],
    settings: Settings,
    *,
    actor: str,
    now: datetime | None = None,
    dry_run: bool = False,
    max_batches: int | None = None,
    batch: int = BATCH,
) -> PruneReport:
    """Delete what the retention policy no longer keeps (``dry_run``: only count it).

    ``max_batches`` bounds the work per table (the scheduler's tick); None runs to the end.
    Audited as ``audit.prune`` when anything was deleted or a person asked for it.
    """
    moment = now or datetime.now(UTC)
    report = PruneReport(
        audit_cutoff=moment - timedelta(days=settings.audit_retention_days),
        usage_cutoff=moment - timedelta(days=settings.usage_retention_days),
        dry_run=dry_run,
    )
    plan: list[tuple[str, sessionmaker[Session], Aged, datetime]] = [
        ("audit_logs", sessions, AuditLog, report.audit_cutoff),
        ("billing_audit_logs", billing_sessions, BillingAuditLog, report.audit_cutoff),
        ("api_usage_logs", sessions, ApiUsageLog, report.usage_cutoff),
    ]
    details = {
        "audit_retention_days": settings.audit_retention_days,
        "usage_retention_days": settings.usage_retention_days,
    }
    try:
        for name, maker, model, cutoff in plan:
            if dry_run:
                with maker() as session:
                    setattr(report, name, count_older(session, model, cutoff))
                continue
            done, runs = 0, 0
            while max_batches is None or runs < max_batches:
                with maker() as session, session.begin():
                    deleted = delete_batch(session, model, cutoff, size=batch)
                done, runs = done + deleted, runs + 1
                if deleted < batch:
                    break
            else:
                report.complete = False
            setattr(report, name, done)
    except Exception as exc:
        if not dry_run:
            audited.record_failure(
                sessions,
                exc,
                actor=actor,
                action="audit.prune",
                target_type="audit_log",
                details=details,
            )
        raise
    if not dry_run and (report.total or actor != audit.SCHEDULER):
        with sessions() as session, session.begin():
            audit.record(
                session,
                actor=actor,
                action="audit.prune",
                target_type="audit_log",
                details={
                    **details,
                    "audit_logs": report.audit_logs,
                    "billing_audit_logs": report.billing_audit_logs,
                    "api_usage_logs": report.api_usage_logs,
                    "complete": report.complete,
                },
            )
    return report
