"""Subscriptions and their lifecycle, with an explicit transition table."""

from __future__ import annotations

import calendar
import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenantry.db.billing.models import (
    BillingCustomer,
    BillingPlan,
    BillingSubscription,
    SubscriptionStatus,
)
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput, NotFound
from tenantry.observability import metrics
from tenantry.services.billing import lookup, validation

S = SubscriptionStatus

#: Which status may follow which. ``canceled`` is final.
TRANSITIONS: dict[S, frozenset[S]] = {
    S.INCOMPLETE: frozenset({S.TRIALING, S.ACTIVE, S.CANCELED}),
    S.TRIALING: frozenset({S.ACTIVE, S.PAST_DUE, S.CANCELED, S.PAUSED, S.UNPAID}),
    S.ACTIVE: frozenset({S.PAST_DUE, S.CANCELED, S.PAUSED, S.UNPAID}),
    S.PAST_DUE: frozenset({S.ACTIVE, S.CANCELED, S.UNPAID, S.PAUSED}),
    S.UNPAID: frozenset({S.ACTIVE, S.CANCELED}),
    S.PAUSED: frozenset({S.ACTIVE, S.CANCELED}),
    S.CANCELED: frozenset(),
}


def can_move(current: str, new: str) -> bool:
    """Whether ``current`` may become ``new`` (staying put is always allowed)."""
    return current == new or S(new) in TRANSITIONS[S(current)]


def add_period(start: datetime, interval: str) -> datetime:
    """The end of a billing period starting at ``start`` (month ends are clamped)."""
    months = 12 if interval == "year" else 1
    month = start.month - 1 + months
    year = start.year + month // 12
    month = month % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return start.replace(year=year, month=month, day=day)


def create_subscription(
    session: Session,
    customer: BillingCustomer,
    plan: BillingPlan,
    *,
    quantity: int = 1,
    trial_days: int | None = None,
    start_active: bool = True,
) -> BillingSubscription:
    """Subscribe ``customer`` to ``plan``: trialing when the plan (or call) gives trial days,
    else active (or incomplete until a first payment, with ``start_active=False``)."""
    if customer.app_id != plan.app_id:
        raise NotFound("no such plan for this customer's app.")
    if customer.erased_at is not None:
        raise Conflict("this customer was erased; it cannot subscribe.")
    if not 1 <= quantity <= validation.MAX_QUANTITY:
        raise InvalidInput(f"quantity must be 1 to {validation.MAX_QUANTITY}.")
    now = utcnow()
    days = plan.trial_days if trial_days is None else trial_days
    if not 0 <= days <= validation.MAX_TRIAL_DAYS:
        raise InvalidInput(f"trial_days must be 0 to {validation.MAX_TRIAL_DAYS}.")
    status = S.TRIALING if days else (S.ACTIVE if start_active else S.INCOMPLETE)
    period_end = now + timedelta(days=days) if days else add_period(now, plan.interval)
    sub = BillingSubscription(
        app_id=customer.app_id,
        customer_id=customer.id,
        plan_code=plan.code,
        status=status,
        amount_minor=plan.amount_minor * quantity,
        currency=plan.currency,
        interval=plan.interval,
        quantity=quantity,
        trial_ends_at=now + timedelta(days=days) if days else None,
        current_period_start=now,
        current_period_end=period_end,
    )
    session.add(sub)
    session.flush()
    metrics.subscription_created(sub.app_id, sub.plan_code)
    return sub


def get_subscription(session: Session, app_id: str, sub_id: str | uuid.UUID) -> BillingSubscription:
    """The app's subscription ``sub_id``."""
    return lookup.owned(session, BillingSubscription, app_id, sub_id, "subscription")


def list_subscriptions(
    session: Session,
    app_id: str,
    *,
    customer_id: uuid.UUID | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[BillingSubscription]:
    """The app's subscriptions, newest first."""
    query = select(BillingSubscription).where(BillingSubscription.app_id == app_id)
    if customer_id is not None:
        query = query.where(BillingSubscription.customer_id == customer_id)
    if status is not None:
        query = query.where(BillingSubscription.status == status)
    return list(
        session.scalars(
            query.order_by(BillingSubscription.created_at.desc()).limit(limit).offset(offset)
        )
    )


def transition(sub: BillingSubscription, new: str) -> BillingSubscription:
    """Move to ``new`` if the table allows it; otherwise a clear refusal."""
    if new not in {s.value for s in S}:
        raise InvalidInput(
            f"unknown subscription status {new!r}.", f"Use one of: {', '.join(s.value for s in S)}."
        )
    if not can_move(sub.status, new):
        allowed = ", ".join(sorted(TRANSITIONS[S(sub.status)])) or "nothing (it is final)"
        raise Conflict(
            f"a {sub.status} subscription cannot become {new}.",
            f"From {sub.status} it may become: {allowed}.",
        )
    now = utcnow()
    if new == S.CANCELED and sub.status != S.CANCELED:
        sub.canceled_at = sub.canceled_at or now
        sub.ended_at = now
        metrics.subscription_canceled(sub.app_id, sub.plan_code)
    if new == S.ACTIVE and sub.status == S.TRIALING:
        sub.current_period_start = now
        sub.current_period_end = add_period(now, sub.interval)
    sub.status = new
    sub.updated_at = now
    return sub


def cancel(sub: BillingSubscription, *, at_period_end: bool) -> BillingSubscription:
    """Cancel now, or at the end of the current period (it stays usable until then)."""
    if sub.status == S.CANCELED:
        return sub
    if at_period_end:
        sub.cancel_at_period_end = True
        sub.canceled_at = utcnow()
        return sub
    return transition(sub, S.CANCELED)


def renew_due(session: Session, app_id: str | None = None) -> int:
    """End periods that are over: cancel those set to cancel at period end, roll the rest
    forward. Returns how many subscriptions changed."""
    now = utcnow()
    query = select(BillingSubscription).where(
        BillingSubscription.status.in_([S.ACTIVE, S.TRIALING, S.PAST_DUE]),
        BillingSubscription.current_period_end <= now,
        BillingSubscription.processor.is_(None),  # the processor drives its own
    )
    if app_id is not None:
        query = query.where(BillingSubscription.app_id == app_id)
    changed = 0
    for sub in session.scalars(query):
        if sub.cancel_at_period_end:
            transition(sub, S.CANCELED)
        else:
            if sub.status == S.TRIALING:
                sub.status = S.ACTIVE
            start = sub.current_period_end or now
            sub.current_period_start = start
            sub.current_period_end = add_period(start, sub.interval)
        changed += 1
    return changed


def counts_by_status(session: Session) -> list[tuple[str, str, str, int]]:
    """How many subscriptions each (app, plan, status) has, in one aggregate query."""
    rows = session.execute(
        select(
            BillingSubscription.app_id,
            BillingSubscription.plan_code,
            BillingSubscription.status,
            func.count(),
        ).group_by(
            BillingSubscription.app_id, BillingSubscription.plan_code, BillingSubscription.status
        )
    )
    return [(app, plan, status, int(n)) for app, plan, status, n in rows]
