"""What a batch of processor events refers to, read in one query per kind of object.

:func:`load_known` reads the payments, invoices and customers a batch's events name; the
lookups of :mod:`tenantry.services.billing.events` then find them in :class:`Known` instead of
asking the database once per event.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import ColumnElement, and_, any_, bindparam, or_, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from tenantry.billing.processors.base import NormalizedEvent
from tenantry.db.billing.models import BillingCustomer, BillingInvoice, BillingPayment


def parse_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


@dataclass
class Known:
    """The payments, invoices and customers a batch of events refers to, read in one query
    per kind (:func:`load_known`): the lookups below find them here instead of asking the
    database once per event, and a payment an event creates joins them for the next."""

    payments: dict[tuple[str, str], BillingPayment] = field(default_factory=dict)
    payments_by_checkout: dict[tuple[str, str], BillingPayment] = field(default_factory=dict)
    invoices: dict[uuid.UUID, BillingInvoice] = field(default_factory=dict)
    invoices_by_processor_id: dict[tuple[str, str, str], BillingInvoice] = field(
        default_factory=dict
    )
    customers: dict[uuid.UUID, BillingCustomer] = field(default_factory=dict)
    customers_by_external: dict[tuple[str, str], BillingCustomer] = field(default_factory=dict)
    customers_by_processor: dict[tuple[str, str, str], BillingCustomer] = field(
        default_factory=dict
    )

    def add_payment(self, payment: BillingPayment) -> None:
        """Make a payment found by the lookups (one just added, or one read)."""
        if payment.processor_payment_id:
            self.payments.setdefault((payment.processor, payment.processor_payment_id), payment)
        if payment.processor_checkout_session_id:
            self.payments_by_checkout.setdefault(
                (payment.processor, payment.processor_checkout_session_id), payment
            )


#: Which processor id of an event an invoice may be found by, and the column holding it.
INVOICE_IDS = (
    ("payment_intent_id", "processor_payment_intent_id"),
    ("checkout_session_id", "processor_checkout_session_id"),
    ("invoice_id", "processor_invoice_id"),
)


def load_known(session: Session, events: Iterable[tuple[str, NormalizedEvent]]) -> Known:
    """Read what ``events`` (each with the app it was delivered to) refer to, in one query
    per kind of object (three at most, whatever the number of events)."""
    known = Known()
    events = list(events)
    postgresql_ = session.get_bind().dialect.name == "postgresql"
    one_of = _one_of_array if postgresql_ else _one_of_list
    if postgresql_:
        # Planned for the values given, each time. Prepared (the driver prepares a statement
        # run five times), PostgreSQL kept the generic plan it made while the tables were
        # empty: a scan of every payment for each batch, which grew with the table.
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    payment_ids: set[tuple[str, str]] = set()
    invoice_uuids: set[uuid.UUID] = set()
    invoice_ids: set[tuple[str, str]] = set()
    customer_uuids: set[uuid.UUID] = set()
    externals: set[tuple[str, str]] = set()
    processor_customers: set[tuple[str, str, str]] = set()
    for app_id, event in events:
        for value in (event.payment_intent_id, event.charge_id, event.checkout_session_id):
            if value:
                payment_ids.add((event.processor, value))
        if (ours := parse_uuid(event.metadata.get("invoice_id"))) is not None:
            invoice_uuids.add(ours)
        for attribute, _ in INVOICE_IDS:
            if value := getattr(event, attribute):
                invoice_ids.add((event.processor, value))
        if (ours := parse_uuid(event.metadata.get("customer_id"))) is not None:
            customer_uuids.add(ours)
        if external := event.metadata.get("external_customer_id"):
            externals.add((app_id, str(external)))
        if event.customer_id:
            processor_customers.add((app_id, event.processor, event.customer_id))
    if payment_ids:
        clauses = [
            and_(
                BillingPayment.processor == processor,
                or_(
                    one_of(BillingPayment.processor_payment_id, values),
                    one_of(BillingPayment.processor_checkout_session_id, values),
                ),
            )
            for processor, values in _by_first(payment_ids).items()
        ]
        for payment in session.scalars(select(BillingPayment).where(or_(*clauses))):
            known.add_payment(payment)
    invoice_clauses: list[ColumnElement[bool]] = (
        [one_of(BillingInvoice.id, invoice_uuids)] if invoice_uuids else []
    )
    for processor, values in _by_first(invoice_ids).items():
        invoice_clauses.append(
            and_(
                BillingInvoice.processor == processor,
                or_(
                    *(one_of(getattr(BillingInvoice, column), values) for _, column in INVOICE_IDS)
                ),
            )
        )
    if invoice_clauses:
        for invoice in session.scalars(select(BillingInvoice).where(or_(*invoice_clauses))):
            known.invoices[invoice.id] = invoice
            for _, column in INVOICE_IDS:
                if value := getattr(invoice, column):
                    known.invoices_by_processor_id.setdefault(
                        (invoice.processor or "", column, value), invoice
                    )
    customer_clauses: list[ColumnElement[bool]] = (
        [one_of(BillingCustomer.id, customer_uuids)] if customer_uuids else []
    )
    customer_clauses += [
        and_(BillingCustomer.app_id == app, one_of(BillingCustomer.external_customer_id, values))
        for app, values in _by_first(externals).items()
    ]
    by_app_processor: dict[tuple[str, str], list[str]] = {}
    for app, processor, value in sorted(processor_customers):
        by_app_processor.setdefault((app, processor), []).append(value)
    customer_clauses += [
        and_(
            BillingCustomer.app_id == app,
            BillingCustomer.processor == processor,
            one_of(BillingCustomer.processor_customer_id, values),
        )
        for (app, processor), values in by_app_processor.items()
    ]
    if customer_clauses:
        for customer in session.scalars(select(BillingCustomer).where(or_(*customer_clauses))):
            known.customers[customer.id] = customer
            if customer.external_customer_id:
                known.customers_by_external[(customer.app_id, customer.external_customer_id)] = (
                    customer
                )
            if customer.processor and customer.processor_customer_id:
                known.customers_by_processor[
                    (customer.app_id, customer.processor, customer.processor_customer_id)
                ] = customer
    if postgresql_:
        session.execute(text("SET LOCAL plan_cache_mode = DEFAULT"))
    return known


def _one_of_list(column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    return cast("ColumnElement[bool]", column.in_(list(values)))


def _one_of_array(column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """``column = ANY(:array)``: one parameter however many values, so the statement's text,
    and the plan PostgreSQL keeps for it once prepared, are the same for every batch. An
    ``IN (…)`` list made a new statement for each count of values, and a prepared one's
    generic plan scanned the whole table, building the list again for each row."""
    array = bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
    return cast("ColumnElement[bool]", column == any_(array))


def _by_first(pairs: set[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for first, second in sorted(pairs):
        grouped.setdefault(first, []).append(second)
    return grouped


def known_customer(known: Known, app_id: str, event: NormalizedEvent) -> BillingCustomer | None:
    """The app's customer ``event`` names, as the database lookup would find it."""
    ours = parse_uuid(event.metadata.get("customer_id"))
    customer = known.customers.get(ours) if ours is not None else None
    if customer is not None and customer.app_id == app_id:
        return customer
    external = event.metadata.get("external_customer_id")
    if external and (found := known.customers_by_external.get((app_id, str(external)))):
        return found
    if event.customer_id:
        return known.customers_by_processor.get((app_id, event.processor, event.customer_id))
    return None
