"""How far behind webhook processing is: stored events not yet applied, and the oldest one's age."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from tenantry.db.billing.models import BillingWebhook, WebhookStatus
from tenantry.db.types import utcnow

W = WebhookStatus


@dataclass(frozen=True)
class Backlog:
    """Events waiting to be applied, and how long the oldest has waited (0 when none)."""

    count: int
    oldest_age_seconds: float


def backlog(session: Session, now: datetime | None = None) -> Backlog:
    """Events received or being applied, and failed ones that will be retried (one aggregate
    query; failures that are not retried are settled, not waiting)."""
    now = now or utcnow()
    waiting = or_(
        BillingWebhook.status.in_([W.RECEIVED, W.PROCESSING]),
        and_(BillingWebhook.status == W.FAILED, BillingWebhook.next_attempt_at.is_not(None)),
    )
    count, oldest = session.execute(
        select(func.count(), func.min(BillingWebhook.received_at)).where(waiting)
    ).one()
    if not count or oldest is None:
        return Backlog(0, 0.0)
    return Backlog(int(count), max((now - oldest).total_seconds(), 0.0))
