"""Domain effects of processor events: payments, refunds, paid invoices, subscription states.

Every effect is idempotent and monotone: applying an event twice changes nothing the second
time, a late or out-of-order event never moves a settled state back (a paid invoice stays
paid, a succeeded payment never becomes failed, a canceled subscription stays canceled), and
an event about another app's objects is ignored.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tenantry.billing.processors.base import EventKind, NormalizedEvent
from tenantry.db.billing.models import (
    BillingCustomer,
    BillingInvoice,
    BillingPayment,
    BillingSubscription,
    PaymentStatus,
    SubscriptionStatus,
)
from tenantry.observability import metrics
from tenantry.services.billing import invoices as invoice_ops
from tenantry.services.billing.event_lookups import (
    INVOICE_IDS,
    Known,
    known_customer,
    parse_uuid,
)
from tenantry.services.billing.subscriptions import can_move

P = PaymentStatus
SETTLED = frozenset({P.SUCCEEDED, P.PARTIALLY_REFUNDED, P.REFUNDED})
#: How far along each payment state is; a payment only ever moves forward (failed may be
#: followed by success: a retried payment intent).
RANK = {
    P.PROCESSING: 1,
    P.REQUIRES_ACTION: 1,
    P.FAILED: 2,
    P.CANCELED: 3,
    P.SUCCEEDED: 4,
    P.PARTIALLY_REFUNDED: 5,
    P.REFUNDED: 6,
}
PAYMENT_KINDS = {
    EventKind.PAYMENT_SUCCEEDED: P.SUCCEEDED,
    EventKind.CHECKOUT_COMPLETED: P.SUCCEEDED,
    EventKind.PAYMENT_FAILED: P.FAILED,
    EventKind.PAYMENT_PROCESSING: P.PROCESSING,
    EventKind.PAYMENT_REQUIRES_ACTION: P.REQUIRES_ACTION,
    EventKind.PAYMENT_CANCELED: P.CANCELED,
}
STRIPE_SUBSCRIPTION_STATUS = {
    "incomplete": SubscriptionStatus.INCOMPLETE,
    "incomplete_expired": SubscriptionStatus.CANCELED,
    "trialing": SubscriptionStatus.TRIALING,
    "active": SubscriptionStatus.ACTIVE,
    "past_due": SubscriptionStatus.PAST_DUE,
    "canceled": SubscriptionStatus.CANCELED,
    "cancelled": SubscriptionStatus.CANCELED,
    "unpaid": SubscriptionStatus.UNPAID,
    "paused": SubscriptionStatus.PAUSED,
    "pending": SubscriptionStatus.INCOMPLETE,
}


class Ignored(Exception):
    """The event has nothing to do for this app; ``reason`` says why (not an error)."""


@dataclass(frozen=True)
class Outcome:
    """What applying an event did."""

    status: str  # processed | ignored
    result: str


def apply_event(
    session: Session, app_id: str, event: NormalizedEvent, known: Known | None = None
) -> Outcome:
    """Apply ``event`` (delivered to ``app_id``'s endpoint) to the billing database.

    With ``known`` (what :func:`load_known` read for the event's batch), payments, invoices
    and customers are looked up there, not in the database; without it, one query each.
    """
    try:
        claimed = event.metadata.get("app_id")
        if claimed and claimed != app_id:
            raise Ignored(f"event is about app {claimed!r}, delivered to {app_id!r}")
        if event.kind in PAYMENT_KINDS:
            if event.kind is EventKind.CHECKOUT_COMPLETED and event.status not in (
                None,
                "paid",
                "no_payment_required",
            ):
                raise Ignored(f"checkout completed with payment status {event.status}")
            status = PAYMENT_KINDS[event.kind]
            return Outcome("processed", _payment(session, app_id, event, status, known))
        if event.kind is EventKind.CHARGE_REFUNDED:
            return Outcome("processed", _refund(session, app_id, event, known))
        if event.kind is EventKind.INVOICE_PAID:
            return Outcome("processed", _invoice_paid(session, app_id, event, known))
        if event.kind in (EventKind.SUBSCRIPTION_CHANGED, EventKind.SUBSCRIPTION_DELETED):
            return Outcome("processed", _subscription(session, app_id, event, known))
        raise Ignored(f"{event.type} needs no action")
    except Ignored as why:
        return Outcome("ignored", str(why))


# --------------------------------------------------------------------------- lookups


def _invoice_for(
    session: Session, app_id: str, event: NormalizedEvent, known: Known | None
) -> BillingInvoice | None:
    found: BillingInvoice | None = None
    ours = parse_uuid(event.metadata.get("invoice_id"))
    if known is not None:
        found = known.invoices.get(ours) if ours is not None else None
        for attribute, column in INVOICE_IDS:
            if found is None and (value := getattr(event, attribute)):
                found = known.invoices_by_processor_id.get((event.processor, column, value))
    elif ours is not None:
        found = session.get(BillingInvoice, ours)
    if found is None and known is None:
        ids = [
            (BillingInvoice.processor_payment_intent_id, event.payment_intent_id),
            (BillingInvoice.processor_checkout_session_id, event.checkout_session_id),
            (BillingInvoice.processor_invoice_id, event.invoice_id),
        ]
        clauses = [col == value for col, value in ids if value]
        if clauses:
            found = session.scalar(
                select(BillingInvoice).where(
                    BillingInvoice.processor == event.processor, or_(*clauses)
                )
            )
    if found is not None and found.app_id != app_id:
        raise Ignored(f"invoice {found.id} belongs to another app")
    return found


def _customer_for(
    session: Session, app_id: str, event: NormalizedEvent, known: Known | None
) -> BillingCustomer | None:
    if known is not None:
        return known_customer(known, app_id, event)
    ours = parse_uuid(event.metadata.get("customer_id"))
    if ours is not None:
        customer = session.get(BillingCustomer, ours)
        if customer is not None and customer.app_id == app_id:
            return customer
    external = event.metadata.get("external_customer_id")
    if external:
        customer = session.scalar(
            select(BillingCustomer).where(
                BillingCustomer.app_id == app_id, BillingCustomer.external_customer_id == external
            )
        )
        if customer is not None:
            return customer
    if event.customer_id:
        return session.scalar(
            select(BillingCustomer).where(
                BillingCustomer.app_id == app_id,
                BillingCustomer.processor == event.processor,
                BillingCustomer.processor_customer_id == event.customer_id,
            )
        )
    return None


def _payment_for(
    session: Session, event: NormalizedEvent, known: Known | None
) -> BillingPayment | None:
    if known is not None:
        for value in (event.payment_intent_id, event.charge_id, event.checkout_session_id):
            if value and (found := known.payments.get((event.processor, value))):
                return found
        if event.checkout_session_id:
            return known.payments_by_checkout.get((event.processor, event.checkout_session_id))
        return None
    clauses = []
    if event.payment_intent_id:
        clauses.append(BillingPayment.processor_payment_id == event.payment_intent_id)
    if event.charge_id:
        clauses.append(BillingPayment.processor_payment_id == event.charge_id)
    if event.checkout_session_id:
        clauses.append(BillingPayment.processor_checkout_session_id == event.checkout_session_id)
        clauses.append(BillingPayment.processor_payment_id == event.checkout_session_id)
    if not clauses:
        return None
    return session.scalar(
        select(BillingPayment)
        .where(BillingPayment.processor == event.processor, or_(*clauses))
        .limit(1)
    )


# --------------------------------------------------------------------------- effects


def _payment(
    session: Session, app_id: str, event: NormalizedEvent, status: P, known: Known | None
) -> str:
    key = event.payment_intent_id or event.checkout_session_id or event.charge_id
    if not key:
        raise Ignored("payment event without a payment id")
    payment = _payment_for(session, event, known)
    if payment is not None and payment.app_id != app_id:
        raise Ignored(f"payment {key} belongs to another app")
    invoice = _invoice_for(session, app_id, event, known)
    if payment is None:
        customer = _customer_for(session, app_id, event, known)
        payment = BillingPayment(
            app_id=app_id,
            processor=event.processor,
            processor_payment_id=key,
            processor_checkout_session_id=event.checkout_session_id,
            amount_minor=event.amount_minor or 0,
            currency=(event.currency or "USD"),
            status=status,
            customer_id=customer.id if customer else None,
            invoice_id=invoice.id if invoice else None,
            milestone_id=_milestone(invoice, event),
            metadata_=dict(event.metadata),
            last_event_at=event.created_at,
        )
        session.add(payment)
        _set_status(payment, status, event)
        if known is None:
            session.flush()  # the unique processor ids stop a concurrent twin here
        else:
            # Flushed with the batch (a twin then fails the batch, applied again one by one).
            known.add_payment(payment)
        note = f"payment {key} recorded as {payment.status}"
    else:
        if event.checkout_session_id and not payment.processor_checkout_session_id:
            payment.processor_checkout_session_id = event.checkout_session_id
            if known is not None:
                known.add_payment(payment)
        if payment.invoice_id is None and invoice is not None:
            payment.invoice_id = invoice.id
            payment.milestone_id = payment.milestone_id or _milestone(invoice, event)
        if event.amount_minor and payment.status not in SETTLED:
            payment.amount_minor = event.amount_minor
        before = payment.status
        _set_status(payment, status, event)
        note = (
            f"payment {key} {before} → {payment.status}"
            if payment.status != before
            else f"payment {key} stays {payment.status}"
        )
    if invoice is not None and payment.status in SETTLED:
        note += "; " + invoice_ops.settle(session, invoice, payment)
    return note


def _milestone(invoice: BillingInvoice | None, event: NormalizedEvent) -> uuid.UUID | None:
    wanted = parse_uuid(event.metadata.get("milestone_id"))
    if invoice is None or wanted is None:
        return None
    return wanted if any(m.id == wanted for m in invoice.milestones) else None


def _set_status(payment: BillingPayment, status: P, event: NormalizedEvent) -> None:
    current = P(payment.status)
    if current in SETTLED and status not in SETTLED:
        return  # a settled payment never goes back
    if RANK[status] < RANK[current] and current is not P.FAILED:
        return  # only a failed payment may start over (a retried payment intent)
    stale = payment.last_event_at is not None and event.created_at < payment.last_event_at
    if stale and RANK[status] <= RANK[current]:
        return  # an older event about an earlier state
    payment.status = status
    if status is P.SUCCEEDED and payment.paid_at is None:
        payment.paid_at = event.created_at
    if status is P.FAILED:
        payment.failure_code = event.failure_code
        payment.failure_message = event.failure_message
    if payment.last_event_at is None or event.created_at > payment.last_event_at:
        payment.last_event_at = event.created_at


def _refund(session: Session, app_id: str, event: NormalizedEvent, known: Known | None) -> str:
    payment = _payment_for(session, event, known)
    if payment is not None and payment.app_id != app_id:
        raise Ignored("payment belongs to another app")
    if payment is None:
        # A refund for a payment billing never saw: record the payment, then the refund.
        _payment(session, app_id, event, P.SUCCEEDED, known)
        payment = _payment_for(session, event, known)
        if payment is None:
            raise Ignored("refund without a payment id")
    refunded = max(payment.amount_refunded_minor, event.amount_refunded_minor or 0)
    payment.amount_refunded_minor = refunded
    target = P.REFUNDED if refunded >= payment.amount_minor else P.PARTIALLY_REFUNDED
    if RANK[target] > RANK[P(payment.status)]:
        payment.status = target
    if payment.paid_at is None:
        payment.paid_at = event.created_at
    return f"payment {payment.processor_payment_id} refunded {refunded} ({payment.status})"


def _invoice_paid(
    session: Session, app_id: str, event: NormalizedEvent, known: Known | None
) -> str:
    invoice = _invoice_for(session, app_id, event, known)
    if invoice is None:
        raise Ignored(f"no invoice of this app for processor invoice {event.invoice_id}")
    if event.invoice_id and not invoice.processor_invoice_id:
        invoice.processor, invoice.processor_invoice_id = event.processor, event.invoice_id
        if known is not None:
            key = (event.processor, "processor_invoice_id", event.invoice_id)
            known.invoices_by_processor_id.setdefault(key, invoice)
    if event.payment_intent_id:
        return _payment(session, app_id, event, P.SUCCEEDED, known)
    if invoice.status in invoice_ops.FINAL:
        return f"invoice already {invoice.status}"
    invoice_ops.mark_paid(invoice, at=event.created_at, amount_paid=event.amount_minor)
    return "invoice paid"


def _subscription(
    session: Session, app_id: str, event: NormalizedEvent, known: Known | None
) -> str:
    sub: BillingSubscription | None = None
    ours = parse_uuid(event.metadata.get("subscription_id"))
    if ours is not None:
        sub = session.get(BillingSubscription, ours)
    if sub is None and event.subscription_id:
        sub = session.scalar(
            select(BillingSubscription).where(
                BillingSubscription.processor == event.processor,
                BillingSubscription.processor_subscription_id == event.subscription_id,
            )
        )
    if sub is not None and sub.app_id != app_id:
        raise Ignored("subscription belongs to another app")
    raw = "canceled" if event.kind is EventKind.SUBSCRIPTION_DELETED else (event.status or "")
    status = STRIPE_SUBSCRIPTION_STATUS.get(raw)
    if status is None:
        raise Ignored(f"unknown subscription status {raw!r}")
    if sub is None:
        customer = _customer_for(session, app_id, event, known)
        if customer is None:
            raise Ignored(f"no customer of this app for subscription {event.subscription_id}")
        sub = BillingSubscription(
            app_id=app_id,
            customer_id=customer.id,
            plan_code=event.metadata.get("plan_code", "processor"),
            status=status,
            amount_minor=event.amount_minor or 0,
            currency=event.currency or "USD",
            processor=event.processor,
            processor_subscription_id=event.subscription_id,
            metadata_=dict(event.metadata),
        )
        session.add(sub)
        before = "new"
        metrics.subscription_created(app_id, sub.plan_code)
    else:
        before = sub.status
        if sub.last_event_at is not None and event.created_at < sub.last_event_at:
            return f"subscription stays {sub.status} (event older than the last applied)"
        if not can_move(sub.status, status):
            return f"subscription stays {sub.status} ({sub.status} cannot become {status})"
        if status is SubscriptionStatus.CANCELED and sub.status != status:
            metrics.subscription_canceled(app_id, sub.plan_code)
        sub.status = status
        if event.subscription_id and not sub.processor_subscription_id:
            sub.processor, sub.processor_subscription_id = event.processor, event.subscription_id
    sub.last_event_at = event.created_at
    if event.current_period_start:
        sub.current_period_start = event.current_period_start
    if event.current_period_end:
        sub.current_period_end = event.current_period_end
    if event.cancel_at_period_end is not None:
        sub.cancel_at_period_end = event.cancel_at_period_end
    if status is SubscriptionStatus.CANCELED:
        sub.canceled_at = sub.canceled_at or event.created_at
        sub.ended_at = sub.ended_at or event.created_at
    session.flush()
    return f"subscription {event.subscription_id} {before} → {sub.status}"
