"""What the retention policy deletes: audit entries (master's and billing's) and API usage
rows older than their cut-off, one bounded batch at a time."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from tenantry.db.billing.models import BillingAuditLog
from tenantry.db.master.models import ApiUsageLog, AuditLog

Aged = type[AuditLog] | type[BillingAuditLog] | type[ApiUsageLog]


def count_older(session: Session, model: Aged, cutoff: datetime) -> int:
    """How many rows of ``model`` were created before ``cutoff``."""
    return session.scalar(select(func.count()).where(model.created_at < cutoff)) or 0


def delete_batch(session: Session, model: Aged, cutoff: datetime, *, size: int) -> int:
    """Delete up to ``size`` of ``model``'s rows created before ``cutoff``, oldest first;
    how many were deleted (fewer than ``size``: none are left)."""
    # Ids first, then a delete by id: a bounded batch on every backend (MySQL refuses a
    # LIMIT in a subquery of IN), and short locks on a table others append to.
    ids = session.scalars(
        select(model.id).where(model.created_at < cutoff).order_by(model.created_at).limit(size)
    ).all()
    if ids:
        session.execute(delete(model).where(model.id.in_(ids)))
    return len(ids)
