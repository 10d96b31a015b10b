"""The billing database at a glance, for the console: the apps using it with their counts,
webhook failure rates per app and processor, and pages of one app's records.

Every read is a grouped count or one page (with its total), so the cost does not grow with
the number of rows billing holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, selectinload

from tenantry.db.billing.models import (
    BillingCustomer,
    BillingInvoice,
    BillingPayment,
    BillingProcessorSecret,
    BillingSubscription,
    BillingWebhook,
    WebhookStatus,
)
from tenantry.db.types import utcnow
from tenantry.errors import InvalidInput

#: The failure rate is over the events received this recently (seed 004's window, as the
#: doctor's webhook check).
RATE_WINDOW = timedelta(hours=24)
#: What a page of one app's records may list, and the model each holds.
LISTS: dict[str, Any] = {
    "customers": BillingCustomer,
    "subscriptions": BillingSubscription,
    "invoices": BillingInvoice,
    "payments": BillingPayment,
    "events": BillingWebhook,
}
#: The time each list is ordered by, newest first.
_NEWEST: dict[str, Any] = {
    "customers": BillingCustomer.created_at,
    "subscriptions": BillingSubscription.created_at,
    "invoices": BillingInvoice.created_at,
    "payments": BillingPayment.created_at,
    "events": BillingWebhook.received_at,
}


@dataclass
class AppSummary:
    """One app using billing, and how many of each record it has."""

    app_id: str
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookRate:
    """One app's events from one processor: how many, how many failed, and the share."""

    app_id: str
    processor: str
    total: int
    failed: int

    @property
    def percent(self) -> float:
        """Failed events as a percentage of all (0 without events)."""
        return 0.0 if not self.total else round(100 * self.failed / self.total, 1)


def apps(session: Session) -> list[AppSummary]:
    """Every app with a record or a signing secret in billing, by name, with its counts."""
    found: dict[str, AppSummary] = {}
    for name, model in LISTS.items():
        for app_id, n in session.execute(select(model.app_id, func.count()).group_by(model.app_id)):
            found.setdefault(app_id, AppSummary(app_id)).counts[name] = int(n)
    for app_id in session.scalars(select(BillingProcessorSecret.app_id).distinct()):
        found.setdefault(app_id, AppSummary(app_id))
    return [found[k] for k in sorted(found)]


def webhook_rates(session: Session, *, window: timedelta = RATE_WINDOW) -> list[WebhookRate]:
    """Per app and processor: events received within ``window`` (the doctor's 24 hours by
    default), and how many of them are failed now."""
    failed = func.sum(case((BillingWebhook.status == WebhookStatus.FAILED, 1), else_=0))
    rows = session.execute(
        select(BillingWebhook.app_id, BillingWebhook.processor, func.count(), failed)
        .where(BillingWebhook.received_at >= utcnow() - window)
        .group_by(BillingWebhook.app_id, BillingWebhook.processor)
        .order_by(BillingWebhook.app_id, BillingWebhook.processor)
    )
    return [WebhookRate(a, p, int(n), int(f or 0)) for a, p, n, f in rows]


def page_of(
    session: Session,
    what: str,
    app_id: str,
    *,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Any], int]:
    """A page of ``app_id``'s ``what`` (customers, subscriptions, invoices with their
    milestones, payments, events), newest first, and how many there are in all."""
    model = LISTS.get(what)
    if model is None:
        raise InvalidInput(f"unknown list {what!r}.", f"Choose one of: {', '.join(LISTS)}.")
    if not 1 <= limit <= 500 or offset < 0:
        raise InvalidInput("limit must be 1 to 500 and offset at least 0.")
    conditions = [model.app_id == app_id]
    if status and what != "customers":
        conditions.append(model.status == status)
    newest = _NEWEST[what]
    query = select(model).where(*conditions).order_by(newest.desc(), model.id)
    if model is BillingInvoice:
        query = query.options(selectinload(BillingInvoice.milestones))
    rows = list(session.scalars(query.limit(limit).offset(offset)))
    total = session.scalar(select(func.count()).select_from(model).where(*conditions))
    return rows, int(total or 0)
