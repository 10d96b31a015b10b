"""Attaching a Stripe PaymentIntent to an invoice (the client portal's payment), and listing
a customer's invoices with their payments, on each backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.db.billing.models import BillingInvoice, BillingPayment
from tenantry.db.schemas import billing_schema
from tenantry.errors import Conflict, InvalidInput
from tenantry.services.billing import customers, invoices
from tenantry.services.billing.invoices import MilestoneInput
from tests.conftest import DbFactory
from tests.templates import migrated_database


@pytest.fixture
def sessions(new_database: DbFactory, engines: Callable[[URL], Engine]) -> sessionmaker[Session]:
    """Sessions on a migrated billing database of the backend."""
    url = new_database("billing", create=False)
    migrated_database(url, billing_schema())
    return sessionmaker(engines(url), expire_on_commit=False)


def _invoice(session: Session, number: str, *, finalize: bool = True) -> BillingInvoice:
    customer, _ = customers.create_customer(session, "acme", None, None, "cust-1")
    return invoices.create_invoice(
        session,
        customer,
        invoice_number=number,
        currency="usd",
        milestones=[MilestoneInput("One", 100), MilestoneInput("Two", 200)],
        finalize=finalize,
    )


def test_attaching_intents(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        first = _invoice(s, "INV-1")
        second = _invoice(s, "INV-2")
        draft = _invoice(s, "INV-3", finalize=False)
        attached = invoices.attach_payment_intent(s, first, " pi_3Nx0000000000001 ")
        assert (attached.processor, attached.processor_payment_intent_id) == (
            "stripe",
            "pi_3Nx0000000000001",
        )
        invoices.attach_payment_intent(s, first, "pi_3Nx0000000000001")  # again: unchanged
        with pytest.raises(Conflict, match="already pays another invoice"):
            invoices.attach_payment_intent(s, second, "pi_3Nx0000000000001")
        with pytest.raises(Conflict, match="already has PaymentIntent"):
            invoices.attach_payment_intent(s, first, "pi_3Nx0000000000002")
        with pytest.raises(Conflict, match="is a draft"):
            invoices.attach_payment_intent(s, draft, "pi_3Nx0000000000003")
        for bad in ("", "ch_3Nx0000000000001", "pi_short", "pi_3Nx 0000000001", "4242424242424242"):
            with pytest.raises(InvalidInput, match="is not a Stripe PaymentIntent id"):
                invoices.attach_payment_intent(s, second, bad)
        second.processor = "tilled"
        with pytest.raises(Conflict, match="paid through tilled"):
            invoices.attach_payment_intent(s, second, "pi_3Nx0000000000004")
        invoices.move(second, invoices.I.VOID)
        with pytest.raises(Conflict, match="is void"):
            invoices.attach_payment_intent(s, second, "pi_3Nx0000000000004")
        first_id = first.id
    with sessions() as s:
        stored = s.get(BillingInvoice, first_id)
        assert stored is not None
        assert stored.processor_payment_intent_id == "pi_3Nx0000000000001"


def test_payments_of_invoices(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        paid = _invoice(s, "INV-1")
        unpaid = _invoice(s, "INV-2")
        s.add(
            BillingPayment(
                app_id="acme",
                invoice_id=paid.id,
                amount_minor=100,
                amount_refunded_minor=0,
                currency="usd",
                status="succeeded",
                processor="stripe",
                processor_payment_id="pi_x",
                metadata_={},
            )
        )
        s.flush()
        found = invoices.payments_of(s, [paid.id, unpaid.id])
        assert [p.amount_minor for p in found[paid.id]] == [100]
        assert found[unpaid.id] == []
        assert invoices.payments_of(s, []) == {}
        nobody = uuid.uuid4()
        assert invoices.payments_of(s, [nobody]) == {nobody: []}
