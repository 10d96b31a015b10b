"""``BillingService``: the seeds' ``billingService`` for Python callers, one transaction per call.

It is an entry point for application code, like the API and the CLI are for their users: it
owns the transaction around each call, and the billing services it calls
(``tenantry.services.billing``) take its session and never commit.

    billing = BillingService.from_settings(load_settings())
    customer = billing.create_customer("trashtech", "acme@example.com", "Acme Waste",
                                       external_customer_id="42", metadata={"industry": "waste"})

It uses the billing database only (``DATABASE_URL_BILLING``), never master or tenants.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db.billing.models import (
    BillingCustomer,
    BillingInvoice,
    BillingPayment,
    BillingPlan,
    BillingProcessorSecret,
    BillingSubscription,
    InvoiceStatus,
)
from tenantry.db.engines import make_engine
from tenantry.services.audit import app_actor
from tenantry.services.billing import audit as billing_audit
from tenantry.services.billing import customers, invoices, plans, subscriptions, webhook_secrets
from tenantry.settings import Settings

T = TypeVar("T")


class BillingService:
    """Customers, plans, subscriptions, invoices and webhook secrets of any app."""

    def __init__(self, sessions: sessionmaker[Session], box: SecretBox | None = None) -> None:
        self._sessions = sessions
        self._box = box

    @classmethod
    def from_settings(cls, settings: Settings) -> BillingService:
        """A service on the configured billing database (its own engine)."""
        engine: Engine = make_engine(settings.billing_url, pool_size=5, role="billing")
        box = (
            SecretBox.from_settings(settings)
            if (settings.secret_keys is not None or settings.key_file.is_file())
            else None
        )
        return cls(sessionmaker(engine, expire_on_commit=False), box)

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def _run(self, fn: Callable[[Session], T]) -> T:
        with self._tx() as session:
            return fn(session)

    # customers ------------------------------------------------------------------

    def create_customer(
        self,
        app_id: str,
        email: str | None,
        name: str | None,
        external_customer_id: str,
        metadata: dict[str, Any] | None = None,
    ) -> BillingCustomer:
        """The app's customer for ``external_customer_id``, created once."""
        return self._run(
            lambda s: customers.create_customer(
                s, app_id, email, name, external_customer_id, metadata
            )[0]
        )

    def get_customer(self, app_id: str, customer_id: str | uuid.UUID) -> BillingCustomer:
        """One of the app's customers by tenantry id."""
        return self._run(lambda s: customers.get_customer(s, app_id, customer_id))

    def get_customer_by_external_id(self, app_id: str, external_id: str) -> BillingCustomer:
        """One of the app's customers by the app's own id."""
        return self._run(lambda s: customers.get_by_external_id(s, app_id, external_id))

    def erase_customer(
        self, app_id: str, customer_id: str | uuid.UUID, *, actor: str | None = None
    ) -> BillingCustomer:
        """GDPR erasure of a customer's personal data (audited as ``actor``, by default the
        app itself: ``app:<app_id>``)."""
        who = actor or app_actor(app_id)
        return self._run(
            lambda s: customers.erase_customer(
                s, customers.get_customer(s, app_id, customer_id), actor=who
            )
        )

    # plans and subscriptions ------------------------------------------------------

    def create_plan(self, app_id: str, **fields: Any) -> BillingPlan:
        """Add a plan (code, name, amount_minor, currency, interval, trial_days)."""
        return self._run(lambda s: plans.create_plan(s, app_id, **fields))

    def subscribe(
        self, app_id: str, customer_id: str | uuid.UUID, plan_code: str, **options: Any
    ) -> BillingSubscription:
        """Subscribe a customer to a plan (audited in billing's log as ``app:<app_id>``)."""

        def subscribe(s: Session) -> BillingSubscription:
            sub = subscriptions.create_subscription(
                s,
                customers.get_customer(s, app_id, customer_id),
                plans.get_plan(s, app_id, plan_code),
                **options,
            )
            _audit(s, app_id, "subscription.create", "subscription", sub.id, plan=plan_code)
            return sub

        return self._run(subscribe)

    def cancel_subscription(
        self, app_id: str, sub_id: str | uuid.UUID, *, at_period_end: bool = False
    ) -> BillingSubscription:
        """Cancel now or at the period's end (audited as ``app:<app_id>``)."""

        def cancel(s: Session) -> BillingSubscription:
            sub = subscriptions.cancel(
                subscriptions.get_subscription(s, app_id, sub_id), at_period_end=at_period_end
            )
            details = {"at_period_end": at_period_end}
            _audit(s, app_id, "subscription.cancel", "subscription", sub.id, **details)
            return sub

        return self._run(cancel)

    # invoices -----------------------------------------------------------------------

    def create_invoice(
        self, app_id: str, customer_id: str | uuid.UUID, **fields: Any
    ) -> BillingInvoice:
        """Issue an invoice (see :func:`tenantry.services.billing.invoices.create_invoice`);
        audited as ``app:<app_id>``."""

        def issue(s: Session) -> BillingInvoice:
            invoice = invoices.create_invoice(
                s, customers.get_customer(s, app_id, customer_id), **fields
            )
            _audit(s, app_id, "invoice.create", "invoice", invoice.id, status=invoice.status)
            return invoice

        return self._run(issue)

    def get_invoice(self, app_id: str, invoice_id: str | uuid.UUID) -> BillingInvoice:
        """One invoice with its milestones loaded."""

        def load(s: Session) -> BillingInvoice:
            invoice = invoices.get_invoice(s, app_id, invoice_id)
            _ = list(invoice.milestones)
            return invoice

        return self._run(load)

    def customer_invoices(
        self, app_id: str, external_customer_id: str, *, drafts: bool = False
    ) -> list[tuple[BillingInvoice, list[BillingPayment]]]:
        """The invoices of the app's customer ``external_customer_id`` (newest first, drafts
        only if asked), each with its milestones loaded and its payments."""

        def load(s: Session) -> list[tuple[BillingInvoice, list[BillingPayment]]]:
            customer = customers.get_by_external_id(s, app_id, external_customer_id)
            found = [
                i
                for i in invoices.list_invoices(s, app_id, customer_id=customer.id, limit=500)
                if drafts or i.status != InvoiceStatus.DRAFT
            ]
            for invoice in found:
                _ = list(invoice.milestones)
            paid = invoices.payments_of(s, [i.id for i in found])
            return [(i, paid[i.id]) for i in found]

        return self._run(load)

    def attach_payment_intent(
        self, app_id: str, invoice_id: str | uuid.UUID, payment_intent_id: str
    ) -> BillingInvoice:
        """Pay the app's invoice through Stripe PaymentIntent ``payment_intent_id``: its
        ``payment_intent.succeeded`` webhook then settles the invoice (see
        :func:`tenantry.services.billing.invoices.attach_payment_intent`); audited as
        ``app:<app_id>``."""

        def attach(s: Session) -> BillingInvoice:
            invoice = invoices.attach_payment_intent(
                s, invoices.get_invoice(s, app_id, invoice_id), payment_intent_id
            )
            _ = list(invoice.milestones)
            _audit(
                s,
                app_id,
                "invoice.payment_intent",
                "invoice",
                invoice.id,
                payment_intent=invoice.processor_payment_intent_id,
            )
            return invoice

        return self._run(attach)

    # webhook secrets --------------------------------------------------------------

    def add_webhook_secret(
        self, app_id: str, processor: str, secret: str
    ) -> BillingProcessorSecret:
        """Accept webhooks signed with ``secret`` (several may be active)."""
        if self._box is None:
            raise RuntimeError("no encryption key configured: run `tenantry init` first")
        box = self._box
        return self._run(
            lambda s: webhook_secrets.add_secret(
                s, box, app_id, processor, secret, actor=app_actor(app_id)
            )
        )


def _audit(
    session: Session, app_id: str, action: str, target: str, ident: uuid.UUID, **details: Any
) -> None:
    """A change made through the library, in billing's log, in the change's transaction."""
    billing_audit.record(
        session,
        app_id=app_id,
        actor=app_actor(app_id),
        action=action,
        target_type=target,
        target_id=str(ident),
        details=details,
    )
