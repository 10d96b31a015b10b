"""The client portal of seed 003: a separate app that reads and writes the billing database
of another app (the issuer of the invoices) and never migrates it.

At start-up it checks that the billing schema is at the revision this code was written for
(``EXPECTED_BILLING_REVISION``) and refuses to start otherwise. It shows a customer's
invoices with their milestones and payments, and takes the id of the Stripe PaymentIntent
the customer is paying with, so that Stripe's ``payment_intent.succeeded`` webhook (received
by tenantry) settles the invoice.

Everything here comes from ``tenantry``'s public API (``Tenantry``, its errors); no
``from __future__ import annotations``: FastAPI must see the route-local aliases.
"""

import os
import sys
import uuid
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from tenantry import NotFound, Tenantry, TenantryError

#: How this app is known to tenantry: a consumer of the billing schema (its owner migrates).
APP_NAME = "client-portal"
#: The billing revision this code reads and writes (its models are tenantry's at 0005).
EXPECTED_BILLING_REVISION = "0005"
#: Exit status when the portal refuses to start.
EXIT_REFUSED = 2

_STATUS = {"NotFound": 404, "InvalidInput": 400, "Conflict": 409}


class PaymentIntentIn(BaseModel):
    """The PaymentIntent the customer pays an invoice with (created with Stripe.js)."""

    payment_intent_id: str = Field(min_length=1, max_length=255)


class MilestoneOut(BaseModel):
    """One instalment of an invoice."""

    position: int
    name: str
    amount_minor: int
    status: str
    due_at: datetime | None
    paid_at: datetime | None


class PaymentOut(BaseModel):
    """A payment recorded against an invoice."""

    amount_minor: int
    currency: str
    status: str
    processor: str
    paid_at: datetime | None


class InvoiceOut(BaseModel):
    """An invoice as the customer sees it."""

    id: uuid.UUID
    number: str
    description: str | None
    status: str
    currency: str
    amount_minor: int
    amount_paid_minor: int
    due_at: datetime | None
    paid_at: datetime | None
    payment_intent_id: str | None
    milestones: list[MilestoneOut]
    payments: list[PaymentOut]


def _invoice_out(invoice: Any, payments: list[Any]) -> InvoiceOut:
    return InvoiceOut(
        id=invoice.id,
        number=invoice.invoice_number,
        description=invoice.description,
        status=invoice.status,
        currency=invoice.currency,
        amount_minor=invoice.amount_minor,
        amount_paid_minor=invoice.amount_paid_minor or 0,
        due_at=invoice.due_at,
        paid_at=invoice.paid_at,
        payment_intent_id=invoice.processor_payment_intent_id,
        milestones=[
            MilestoneOut(
                position=m.position,
                name=m.name,
                amount_minor=m.amount_minor,
                status=m.status,
                due_at=m.due_at,
                paid_at=m.paid_at,
            )
            for m in sorted(invoice.milestones, key=lambda m: m.position)
        ],
        payments=[
            PaymentOut(
                amount_minor=p.amount_minor,
                currency=p.currency,
                status=p.status,
                processor=p.processor,
                paid_at=p.paid_at,
            )
            for p in payments
        ],
    )


def create_app(tenantry: Tenantry, billing_app: str) -> FastAPI:
    """The portal over ``tenantry``'s billing database, showing the customers and invoices
    of app ``billing_app`` (the app that issues them). Authenticating the customer is the
    deployment's job (the portal trusts the customer id in the path)."""
    web = FastAPI(title="client portal")
    invoices = tenantry.billing.invoices

    @web.exception_handler(TenantryError)
    def refused(request: Request, exc: TenantryError) -> JSONResponse:
        status = _STATUS.get(type(exc).__name__, 500)
        body = {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}
        return JSONResponse({"error": body}, status_code=status)

    @web.get("/healthz")
    def healthz() -> dict[str, str]:
        """Up, and which billing revision it serves."""
        return {"status": "ok", "billing_revision": EXPECTED_BILLING_REVISION}

    @web.get("/customers/{customer_id}/invoices", response_model=list[InvoiceOut])
    def customer_invoices(customer_id: str) -> list[InvoiceOut]:
        """The customer's invoices (not drafts), newest first, with milestones and payments."""
        found = invoices.of_customer(customer_id, app_id=billing_app)
        return [_invoice_out(f.invoice, f.payments) for f in found]

    @web.post(
        "/customers/{customer_id}/invoices/{invoice_id}/payment-intent",
        response_model=InvoiceOut,
    )
    def pay_with(customer_id: str, invoice_id: uuid.UUID, body: PaymentIntentIn) -> InvoiceOut:
        """Pay one of the customer's invoices with a Stripe PaymentIntent: the intent's
        ``payment_intent.succeeded`` webhook then records the payment and settles it."""
        owned = {f.invoice.id for f in invoices.of_customer(customer_id, app_id=billing_app)}
        if invoice_id not in owned:
            raise NotFound(f"customer {customer_id!r} has no invoice {invoice_id}.")
        invoice = invoices.attach_payment_intent(
            invoice_id, body.payment_intent_id, app_id=billing_app
        )
        return _invoice_out(invoice, [])

    return web


def check() -> str:
    """Refuse (exit 2, the reason on stderr) unless the billing database is at
    ``EXPECTED_BILLING_REVISION``; the revision found otherwise."""
    try:
        state = Tenantry.check_schema("billing", expects=EXPECTED_BILLING_REVISION, as_app=APP_NAME)
    except TenantryError as exc:
        print(f"{APP_NAME}: refusing to start: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  {exc.hint}", file=sys.stderr)
        raise SystemExit(EXIT_REFUSED) from None
    return f"billing at {state.revision} (owner {state.owner_app}), as {APP_NAME} expects"


def main() -> None:
    """``python -m client_portal check``: the start-up check alone; ``python -m
    client_portal`` (serve): check, then serve on ``$PORT`` (default 8090) the invoices of
    app ``$PORTAL_BILLING_APP``."""
    command = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if command not in ("serve", "check"):
        print(f"usage: python -m client_portal [serve|check], not {command!r}", file=sys.stderr)
        raise SystemExit(EXIT_REFUSED)
    print(check(), flush=True)
    if command == "check":
        return
    billing_app = os.environ.get("PORTAL_BILLING_APP", "").strip()
    if not billing_app:
        print(
            f"{APP_NAME}: set PORTAL_BILLING_APP to the app whose invoices it shows "
            "(e.g. PORTAL_BILLING_APP=ignitebd).",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_REFUSED)
    import uvicorn

    tenantry = Tenantry.from_env()
    try:
        port = int(os.environ.get("PORT", "8090"))
        uvicorn.run(create_app(tenantry, billing_app), host="127.0.0.1", port=port)
    finally:
        tenantry.close()
