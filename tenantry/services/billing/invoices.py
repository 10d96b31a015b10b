"""Invoices with milestones (seed 003): draft → open → paid | void | uncollectible."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenantry.db.billing.models import (
    BillingCustomer,
    BillingInvoice,
    BillingInvoiceMilestone,
    BillingPayment,
    InvoiceStatus,
    MilestoneStatus,
    PaymentStatus,
)
from tenantry.db.savepoints import insert_in_savepoint
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput
from tenantry.services.billing import lookup, validation

I = InvoiceStatus  # noqa: E741
_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]{0,63}$")
FINAL = frozenset({I.PAID, I.VOID})
MOVES: dict[I, frozenset[I]] = {
    I.DRAFT: frozenset({I.OPEN, I.VOID}),
    I.OPEN: frozenset({I.PAID, I.VOID, I.UNCOLLECTIBLE}),
    I.UNCOLLECTIBLE: frozenset({I.PAID, I.VOID}),
    I.PAID: frozenset(),
    I.VOID: frozenset(),
}
SETTLED_PAYMENTS = frozenset(
    {PaymentStatus.SUCCEEDED, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}
)


@dataclass(frozen=True)
class MilestoneInput:
    """One instalment of a new invoice."""

    name: str
    amount_minor: int
    description: str | None = None
    due_at: datetime | None = None


def create_invoice(
    session: Session,
    customer: BillingCustomer,
    *,
    invoice_number: str,
    currency: str,
    amount_minor: int | None = None,
    milestones: list[MilestoneInput] | None = None,
    description: str | None = None,
    due_at: datetime | None = None,
    metadata: dict[str, str] | None = None,
    finalize: bool = False,
) -> BillingInvoice:
    """A new invoice: either one amount, or milestones that add up to it."""
    if customer.erased_at is not None:
        raise Conflict("this customer was erased; it cannot be invoiced.")
    if not _NUMBER.fullmatch(invoice_number):
        raise InvalidInput(f"invalid invoice number {invoice_number!r}.")
    validation.no_card_data(
        [description or "", metadata or {}], where="the invoice description or metadata"
    )
    parts = milestones or []
    for m in parts:
        validation.amount(m.amount_minor, what=f"milestone {m.name!r} amount")
        validation.no_card_data([m.name, m.description or ""], where="a milestone")
    total = sum(m.amount_minor for m in parts)
    if amount_minor is None:
        if not parts:
            raise InvalidInput("an invoice needs an amount or milestones.")
        amount_minor = total
    validation.amount(amount_minor)
    if parts and total != amount_minor:
        raise InvalidInput(f"the milestones add up to {total}, the invoice says {amount_minor}.")
    taken = Conflict(f"invoice number {invoice_number!r} is taken in this app.")
    if session.scalar(
        select(BillingInvoice.id).where(
            BillingInvoice.app_id == customer.app_id,
            BillingInvoice.invoice_number == invoice_number,
        )
    ):
        raise taken
    invoice = BillingInvoice(
        app_id=customer.app_id,
        customer_id=customer.id,
        invoice_number=invoice_number,
        description=description,
        amount_minor=amount_minor,
        currency=validation.currency(currency),
        due_at=due_at,
        metadata_=metadata or {},
        status=I.OPEN if finalize else I.DRAFT,
    )
    invoice.milestones = [
        BillingInvoiceMilestone(
            position=n + 1,
            name=m.name,
            description=m.description,
            amount_minor=m.amount_minor,
            due_at=m.due_at,
        )
        for n, m in enumerate(parts)
    ]
    if insert_in_savepoint(session, invoice) is not None:  # numbered meanwhile by another
        raise taken
    return invoice


def get_invoice(session: Session, app_id: str, invoice_id: str | uuid.UUID) -> BillingInvoice:
    """The app's invoice ``invoice_id``."""
    return lookup.owned(session, BillingInvoice, app_id, invoice_id, "invoice")


def list_invoices(
    session: Session,
    app_id: str,
    *,
    status: str | None = None,
    customer_id: uuid.UUID | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[BillingInvoice]:
    """The app's invoices, newest first."""
    query = select(BillingInvoice).where(BillingInvoice.app_id == app_id)
    if status:
        query = query.where(BillingInvoice.status == status)
    if customer_id:
        query = query.where(BillingInvoice.customer_id == customer_id)
    return list(
        session.scalars(
            query.order_by(BillingInvoice.created_at.desc()).limit(limit).offset(offset)
        )
    )


def move(invoice: BillingInvoice, new: I) -> BillingInvoice:
    """Change an invoice's status along the allowed moves."""
    if invoice.status == new:
        return invoice
    if new not in MOVES[I(invoice.status)]:
        raise Conflict(f"a {invoice.status} invoice cannot become {new}.")
    now = utcnow()
    invoice.status = new
    if new == I.VOID:
        invoice.voided_at = now
    if new == I.PAID:
        invoice.paid_at = invoice.paid_at or now
    invoice.updated_at = now
    return invoice


def mark_paid(invoice: BillingInvoice, *, at: datetime, amount_paid: int | None) -> None:
    """The processor says ``invoice`` is paid, naming no payment (Stripe's ``invoice.paid``
    from API version 2025-03-31): it is paid with every milestone, and its amount paid is
    what the processor reports (the whole amount when it reports none), never less than
    already recorded."""
    for m in invoice.milestones:
        if m.status == MilestoneStatus.PENDING:
            m.status, m.paid_at = MilestoneStatus.PAID, at
    reported = invoice.amount_minor if amount_paid is None else amount_paid
    invoice.amount_paid_minor = max(invoice.amount_paid_minor or 0, reported)
    if invoice.status == I.DRAFT:
        move(invoice, I.OPEN)
    move(invoice, I.PAID)
    invoice.paid_at = at


def settle(session: Session, invoice: BillingInvoice, payment: BillingPayment) -> str:
    """Apply a settled payment: its milestone (or every milestone) is paid; the invoice is
    paid when all its milestones are (or its amount is covered). Never un-pays anything.
    Returns what happened, for the event log."""
    if payment.status not in SETTLED_PAYMENTS:
        return "payment not settled"
    now = payment.paid_at or utcnow()
    if payment.milestone_id is not None:
        for m in invoice.milestones:
            if m.id == payment.milestone_id and m.status == MilestoneStatus.PENDING:
                m.status, m.paid_at = MilestoneStatus.PAID, now
    elif invoice.milestones and payment.amount_minor >= _unpaid(invoice):
        for m in invoice.milestones:
            if m.status == MilestoneStatus.PENDING:
                m.status, m.paid_at = MilestoneStatus.PAID, now
    session.flush()
    paid_total = session.scalar(
        select(func.coalesce(func.sum(BillingPayment.amount_minor), 0)).where(
            BillingPayment.invoice_id == invoice.id,
            BillingPayment.status.in_(list(SETTLED_PAYMENTS)),
        )
    )
    # Never lowered: an invoice.paid naming no payment may have recorded more already.
    invoice.amount_paid_minor = max(invoice.amount_paid_minor or 0, int(paid_total or 0))
    if invoice.status in FINAL:
        return f"invoice already {invoice.status}"
    all_milestones = bool(invoice.milestones) and all(
        m.status == MilestoneStatus.PAID for m in invoice.milestones
    )
    covered = not invoice.milestones and invoice.amount_paid_minor >= invoice.amount_minor
    if all_milestones or covered:
        if invoice.status == I.DRAFT:
            invoice.status = I.OPEN
        move(invoice, I.PAID)
        invoice.paid_at = now
        return "invoice paid"
    if invoice.status == I.DRAFT:
        move(invoice, I.OPEN)
    return "invoice partly paid"


def _unpaid(invoice: BillingInvoice) -> int:
    return sum(m.amount_minor for m in invoice.milestones if m.status == MilestoneStatus.PENDING)


#: A Stripe PaymentIntent id as Stripe issues them (``pi_`` then letters and digits).
_PAYMENT_INTENT = re.compile(r"^pi_[A-Za-z0-9]{8,250}$")


def attach_payment_intent(
    session: Session, invoice: BillingInvoice, payment_intent_id: str
) -> BillingInvoice:
    """Record that ``invoice`` is being paid through Stripe PaymentIntent
    ``payment_intent_id`` (created by the app with Stripe), so that the intent's
    ``payment_intent.succeeded`` webhook settles this invoice. Attaching the same id again
    changes nothing; a settled invoice, another processor or an id another invoice holds is
    refused."""
    value = payment_intent_id.strip()
    if not _PAYMENT_INTENT.fullmatch(value):
        raise InvalidInput(
            f"{payment_intent_id[:40]!r} is not a Stripe PaymentIntent id.",
            "Send the id Stripe returned when the intent was created, e.g. pi_3Nx….",
        )
    if invoice.processor_payment_intent_id == value and invoice.processor == "stripe":
        return invoice
    if invoice.status in (I.PAID, I.VOID):
        raise Conflict(f"invoice {invoice.invoice_number} is {invoice.status}: nothing to pay.")
    if invoice.status == I.DRAFT:
        raise Conflict(
            f"invoice {invoice.invoice_number} is a draft.",
            "The issuing app finalizes it (status open) before it can be paid.",
        )
    if invoice.processor not in (None, "stripe"):
        raise Conflict(
            f"invoice {invoice.invoice_number} is paid through {invoice.processor}, not Stripe."
        )
    if invoice.processor_payment_intent_id is not None:
        raise Conflict(
            f"invoice {invoice.invoice_number} already has PaymentIntent "
            f"{invoice.processor_payment_intent_id}.",
            "Cancel that intent with Stripe first, or keep using it.",
        )
    holder = session.scalar(
        select(BillingInvoice.invoice_number).where(
            BillingInvoice.processor == "stripe",
            BillingInvoice.processor_payment_intent_id == value,
        )
    )
    if holder is not None:
        raise Conflict(f"PaymentIntent {value} already pays another invoice.")
    invoice.processor, invoice.processor_payment_intent_id = "stripe", value
    invoice.updated_at = utcnow()
    session.flush()
    return invoice


def payments_of(
    session: Session, invoice_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[BillingPayment]]:
    """The payments recorded against each of ``invoice_ids``, oldest first."""
    found: dict[uuid.UUID, list[BillingPayment]] = {i: [] for i in invoice_ids}
    if not invoice_ids:
        return found
    rows = session.scalars(
        select(BillingPayment)
        .where(BillingPayment.invoice_id.in_(invoice_ids))
        .order_by(BillingPayment.created_at, BillingPayment.id)
    )
    for payment in rows:
        if payment.invoice_id is not None:
            found[payment.invoice_id].append(payment)
    return found
