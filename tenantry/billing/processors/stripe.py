"""Stripe: ``Stripe-Signature`` webhooks and Stripe's event objects, without Stripe's SDK.

What is read of each event is declared below as strict shapes (:mod:`.shapes`): a field of
the wrong type is a :class:`~tenantry.billing.processors.base.MalformedEvent` naming it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tenantry.billing.processors.base import EventKind, MalformedEvent, NormalizedEvent
from tenantry.billing.processors.shapes import (
    MAX_AMOUNT_MINOR,
    Amount,
    Currency,
    EventId,
    EventType,
    Metadata,
    OptText,
    PaymentError,
    ProcessorObject,
    Ref,
    Shape,
    UnixSeconds,
    load_event,
    read,
    unix_time,
)
from tenantry.billing.processors.signatures import verify_header

_PAYMENT_INTENT_KINDS = {
    "payment_intent.succeeded": EventKind.PAYMENT_SUCCEEDED,
    "payment_intent.payment_failed": EventKind.PAYMENT_FAILED,
    "payment_intent.processing": EventKind.PAYMENT_PROCESSING,
    "payment_intent.requires_action": EventKind.PAYMENT_REQUIRES_ACTION,
    "payment_intent.canceled": EventKind.PAYMENT_CANCELED,
}
_SUBSCRIPTION_PREFIX = "customer.subscription."
_OBJECT = "data.object"


# --- What is read of Stripe's objects ----------------------------------------------------


class StripeEnvelope(Shape):
    """Every Stripe event: its id, type and when it happened."""

    id: EventId
    type: EventType
    created: UnixSeconds


class StripeObject(ProcessorObject):
    """What every object read here may carry."""

    customer: Ref = None


class PaymentIntent(StripeObject):
    amount: Amount | None = None
    amount_received: Amount | None = None
    latest_charge: Ref = None
    invoice: Ref = None
    last_payment_error: PaymentError | None = None


class CheckoutSession(StripeObject):
    payment_intent: Ref = None
    subscription: Ref = None
    invoice: Ref = None
    amount_total: Amount | None = None
    payment_status: OptText = None


class Charge(StripeObject):
    payment_intent: Ref = None
    invoice: Ref = None
    amount: Amount | None = None
    amount_refunded: Amount | None = None


class SubscriptionDetails(Shape):
    subscription: Ref = None
    metadata: Metadata | None = None


class InvoiceParent(Shape):
    subscription_details: SubscriptionDetails | None = None


class InvoicePaymentRef(Shape):
    payment_intent: Ref = None


class InvoicePayment(Shape):
    payment: InvoicePaymentRef | None = None


class InvoicePayments(Shape):
    data: list[InvoicePayment] | None = None


class Invoice(StripeObject):
    """An invoice, in the API shapes before and after 2025-03-31."""

    parent: InvoiceParent | None = None
    subscription_details: SubscriptionDetails | None = None
    subscription: Ref = None
    payment_intent: Ref = None
    payments: InvoicePayments | None = None
    charge: Ref = None
    amount_paid: Amount | None = None

    def subscription_and_metadata(self) -> tuple[str | None, dict[str, str]]:
        """The subscription id and that subscription's metadata: in ``subscription`` and
        ``subscription_details`` up to API version 2025-02-24, in
        ``parent.subscription_details`` from 2025-03-31."""
        details = (self.parent.subscription_details if self.parent else None) or (
            self.subscription_details
        )
        subscription = self.subscription or (details.subscription if details else None)
        return subscription, dict(details.metadata or {}) if details else {}

    def payment_intent_id(self) -> str | None:
        """``payment_intent`` in old API versions, an expanded ``payments`` list in new ones
        (absent from webhooks unless expanded)."""
        if self.payment_intent:
            return self.payment_intent
        for payment in (self.payments.data if self.payments else None) or []:
            if payment.payment and payment.payment.payment_intent:
                return payment.payment.payment_intent
        return None


class Price(Shape):
    """A price, or a legacy plan (``amount``)."""

    unit_amount: Amount | None = None
    amount: Amount | None = None
    currency: Currency | None = None


class SubscriptionItem(Shape):
    price: Price | None = None
    plan: Price | None = None
    quantity: Amount | None = None
    current_period_start: UnixSeconds | None = None
    current_period_end: UnixSeconds | None = None


class SubscriptionItems(Shape):
    data: list[SubscriptionItem] | None = None


class Subscription(StripeObject):
    items: SubscriptionItems | None = None
    current_period_start: UnixSeconds | None = None
    current_period_end: UnixSeconds | None = None
    cancel_at_period_end: bool | None = None


def _subscription_amount(items: list[SubscriptionItem]) -> int | None:
    """The recurring amount: each item's ``price.unit_amount`` times ``quantity``, summed.

    ``None`` when an item has no unit amount (tiered or metered prices) or there are no items.
    """
    if not items:
        return None
    total = 0
    for item in items:
        price = item.price or item.plan
        unit = None if price is None else price.unit_amount
        if unit is None and price is not None:
            unit = price.amount  # legacy plan objects
        if unit is None:
            return None
        total += unit * (1 if item.quantity is None else item.quantity)
    if total > MAX_AMOUNT_MINOR:
        raise MalformedEvent(
            f"{_OBJECT}.items.data", f"the amounts times quantities exceed {MAX_AMOUNT_MINOR}"
        )
    return total


# --- Stripe -------------------------------------------------------------------------------


def parse_stripe_event(body: bytes, *, processor: str = "stripe") -> NormalizedEvent:
    """A Stripe event (the JSON webhook body) in tenantry's terms.

    Raises :class:`MalformedEvent` for a body that is not JSON, an event without a valid
    ``id``, ``type`` or ``created`` or, for the types billing acts on, without a
    ``data.object``, or any field read of that object having the wrong type or range.
    """
    event = load_event(body)
    envelope = read(StripeEnvelope, event)
    event_type = envelope.type
    created_at = datetime.fromtimestamp(envelope.created, tz=UTC)
    payment_intent_kind = _PAYMENT_INTENT_KINDS.get(event_type)
    wanted = (
        payment_intent_kind is not None
        or event_type in {"checkout.session.completed", "charge.refunded", "invoice.paid"}
        or event_type.startswith(_SUBSCRIPTION_PREFIX)
    )
    if not wanted:
        return NormalizedEvent(
            processor=processor,
            event_id=envelope.id,
            type=event_type,
            kind=EventKind.IGNORED,
            created_at=created_at,
        )
    data = event.get("data")
    raw = data.get("object") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        raise MalformedEvent(_OBJECT, f"a {event_type} event needs the object it is about")

    def common(obj: StripeObject) -> dict[str, Any]:
        return {
            "processor": processor,
            "event_id": envelope.id,
            "type": event_type,
            "created_at": created_at,
            "object_id": obj.id,
            "customer_id": obj.customer,
            "currency": obj.currency,
            "metadata": obj.meta,
        }

    if payment_intent_kind is not None:
        intent = read(PaymentIntent, raw, where=_OBJECT)
        error = intent.last_payment_error
        return NormalizedEvent(
            kind=payment_intent_kind,
            payment_intent_id=intent.id,
            charge_id=intent.latest_charge,
            invoice_id=intent.invoice,
            amount_minor=intent.amount_received or intent.amount,
            status=intent.status,
            failure_code=error.failure_code if error else None,
            failure_message=error.message if error else None,
            **common(intent),
        )
    if event_type == "checkout.session.completed":
        checkout = read(CheckoutSession, raw, where=_OBJECT)
        return NormalizedEvent(
            kind=EventKind.CHECKOUT_COMPLETED,
            checkout_session_id=checkout.id,
            payment_intent_id=checkout.payment_intent,
            subscription_id=checkout.subscription,
            invoice_id=checkout.invoice,
            amount_minor=checkout.amount_total,
            status=checkout.payment_status,
            **common(checkout),
        )
    if event_type == "charge.refunded":
        charge = read(Charge, raw, where=_OBJECT)
        return NormalizedEvent(
            kind=EventKind.CHARGE_REFUNDED,
            charge_id=charge.id,
            payment_intent_id=charge.payment_intent,
            invoice_id=charge.invoice,
            amount_minor=charge.amount,
            amount_refunded_minor=charge.amount_refunded,
            status=charge.status,
            **common(charge),
        )
    if event_type == "invoice.paid":
        invoice = read(Invoice, raw, where=_OBJECT)
        subscription, subscription_metadata = invoice.subscription_and_metadata()
        fields = common(invoice)
        # Renewal invoices carry no metadata of their own: fall back on the subscription's.
        fields["metadata"] = {**subscription_metadata, **fields["metadata"]}
        return NormalizedEvent(
            kind=EventKind.INVOICE_PAID,
            invoice_id=invoice.id,
            subscription_id=subscription,
            payment_intent_id=invoice.payment_intent_id(),
            charge_id=invoice.charge,
            amount_minor=invoice.amount_paid,
            status=invoice.status,
            **fields,
        )
    # customer.subscription.*
    sub = read(Subscription, raw, where=_OBJECT)
    items = (sub.items.data if sub.items else None) or []
    first = items[0] if items else SubscriptionItem()
    fields = common(sub)
    if fields["currency"] is None and first.price is not None:
        fields["currency"] = first.price.currency
    # API versions from 2025-03-31 moved the current period from the subscription to its items.
    start = unix_time(sub.current_period_start) or unix_time(first.current_period_start)
    end = unix_time(sub.current_period_end) or unix_time(first.current_period_end)
    deleted = event_type == f"{_SUBSCRIPTION_PREFIX}deleted"
    return NormalizedEvent(
        kind=EventKind.SUBSCRIPTION_DELETED if deleted else EventKind.SUBSCRIPTION_CHANGED,
        subscription_id=sub.id,
        amount_minor=_subscription_amount(items),
        status=sub.status,
        current_period_start=start,
        current_period_end=end,
        cancel_at_period_end=sub.cancel_at_period_end,
        **fields,
    )


class StripeProcessor:
    """Stripe's webhooks: ``Stripe-Signature`` (``t`` in seconds) and Stripe event objects."""

    name: str = "stripe"
    signature_header: str = "Stripe-Signature"

    def verify(
        self, body: bytes, header: str | None, secrets: list[str], *, now: float | None = None
    ) -> None:
        """Raise :class:`~tenantry.billing.processors.base.SignatureError` unless ``header``
        signs the raw ``body`` with one of ``secrets`` within the tolerance of ``now``."""
        verify_header(
            body,
            header,
            secrets,
            header_name=self.signature_header,
            units_per_second=1,
            now=now,
        )

    def parse(self, body: bytes) -> NormalizedEvent:
        """The Stripe event in ``body`` (already verified), normalised."""
        return parse_stripe_event(body, processor=self.name)


#: The Stripe adapter.
STRIPE = StripeProcessor()
