"""``app.billing``: the billing database for application code, on the platform's engine."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from tenantry.billing.service import BillingService
from tenantry.db.billing.models import BillingCustomer, BillingInvoice, BillingPayment


class Customers:
    """``app.billing.customers``: an app's billing customers."""

    def __init__(self, service: BillingService, app_id: str) -> None:
        self._service = service
        self._app_id = app_id

    def create(
        self,
        external_customer_id: str,
        *,
        email: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
        app_id: str | None = None,
    ) -> BillingCustomer:
        """The customer ``external_customer_id`` of the app (``TENANTRY_APP`` unless
        ``app_id`` is given), created once: a second call returns the first customer."""
        return self._service.create_customer(
            app_id or self._app_id, email, name, external_customer_id, metadata
        )


@dataclass(frozen=True)
class InvoiceWithPayments:
    """An invoice (its ``milestones`` loaded) and the payments recorded against it."""

    invoice: BillingInvoice
    payments: list[BillingPayment]


class Invoices:
    """``app.billing.invoices``: what a customer owes and pays (seed 003's client portal)."""

    def __init__(self, service: BillingService, app_id: str) -> None:
        self._service = service
        self._app_id = app_id

    def of_customer(
        self, external_customer_id: str, *, app_id: str | None = None, drafts: bool = False
    ) -> list[InvoiceWithPayments]:
        """The invoices of the app's customer ``external_customer_id``, newest first, with
        milestones and payments (drafts, the issuer's work in progress, only if asked).
        :class:`~tenantry.errors.NotFound` for an unknown customer."""
        found = self._service.customer_invoices(
            app_id or self._app_id, external_customer_id, drafts=drafts
        )
        return [InvoiceWithPayments(invoice, payments) for invoice, payments in found]

    def attach_payment_intent(
        self, invoice_id: str | uuid.UUID, payment_intent_id: str, *, app_id: str | None = None
    ) -> BillingInvoice:
        """Pay invoice ``invoice_id`` through the Stripe PaymentIntent the app created:
        when Stripe's ``payment_intent.succeeded`` webhook for it arrives, the payment is
        recorded and the invoice (and its milestones) settled. Attaching the same id twice
        changes nothing; :class:`~tenantry.errors.InvalidInput` for a malformed id,
        :class:`~tenantry.errors.Conflict` for a draft, paid or void invoice, or an id that
        another invoice holds."""
        return self._service.attach_payment_intent(
            app_id or self._app_id, invoice_id, payment_intent_id
        )


class BillingApi:
    """Billing for application code: ``customers``, ``invoices``, and ``service`` (the whole
    :class:`~tenantry.billing.service.BillingService`: plans, subscriptions, invoices)."""

    def __init__(self, service: BillingService, app_id: str) -> None:
        self.service = service
        self.customers = Customers(service, app_id)
        self.invoices = Invoices(service, app_id)
