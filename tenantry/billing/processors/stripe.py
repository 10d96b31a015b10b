"""Stripe: ``Stripe-Signature`` webhooks and Stripe's event objects, without Stripe's SDK.

The small readers here (:func:`load_event`, :func:`id_of`, :func:`int_of` …) take Stripe-shaped
JSON defensively; the Tilled adapter reuses them, Tilled's objects being shaped alike.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tenantry.billing.processors.base import EventKind, NormalizedEvent, event_metadata
from tenantry.billing.processors.signatures import verify_header

_PAYMENT_INTENT_KINDS = {
    "payment_intent.succeeded": EventKind.PAYMENT_SUCCEEDED,
    "payment_intent.payment_failed": EventKind.PAYMENT_FAILED,
    "payment_intent.processing": EventKind.PAYMENT_PROCESSING,
    "payment_intent.requires_action": EventKind.PAYMENT_REQUIRES_ACTION,
    "payment_intent.canceled": EventKind.PAYMENT_CANCELED,
}
_SUBSCRIPTION_PREFIX = "customer.subscription."


# --- Readers of Stripe-shaped JSON -------------------------------------------------------


def load_event(body: bytes) -> dict[str, Any]:
    """The JSON object in ``body``; ``ValueError`` unless it has a string ``id`` and ``type``."""
    try:
        event = json.loads(body)
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise ValueError(f"webhook body is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise ValueError("webhook body is not a JSON object")
    for key in ("id", "type"):
        if not isinstance(event.get(key), str) or not event[key]:
            raise ValueError(f"webhook event has no {key!r}")
    return event


def as_object(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def str_of(value: Any) -> str | None:
    """``value`` if it is a non-empty string, else ``None``."""
    return value if isinstance(value, str) and value else None


def id_of(value: Any) -> str | None:
    """The id in a reference field, which holds an id or, when expanded, the object itself."""
    if isinstance(value, dict):
        return str_of(value.get("id"))
    return str_of(value)


def int_of(value: Any) -> int | None:
    """``value`` if it is an integer (not a bool, not a float), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def bool_of(value: Any) -> bool | None:
    """``value`` if it is a boolean, else ``None``."""
    return value if isinstance(value, bool) else None


def currency_of(value: Any) -> str | None:
    """A currency code upper-cased (processors send ``"usd"``), or ``None``."""
    text = str_of(value)
    return text.upper() if text else None


def failure_of(obj: dict[str, Any]) -> tuple[str | None, str | None]:
    """The (code, message) of a payment intent's ``last_payment_error``."""
    error = as_object(obj.get("last_payment_error"))
    code = str_of(error.get("code")) or str_of(error.get("decline_code"))
    return code, str_of(error.get("message"))


def unix_time(value: Any) -> datetime | None:
    """A Unix timestamp in seconds as an aware UTC datetime, or ``None``."""
    seconds = int_of(value)
    return datetime.fromtimestamp(seconds, tz=UTC) if seconds is not None else None


# --- Stripe -------------------------------------------------------------------------------


def _subscription_items(obj: dict[str, Any]) -> list[dict[str, Any]]:
    data = as_object(obj.get("items")).get("data")
    return [as_object(item) for item in data] if isinstance(data, list) else []


def _subscription_amount(items: list[dict[str, Any]]) -> int | None:
    """The recurring amount: each item's ``price.unit_amount`` times ``quantity``, summed.

    ``None`` when an item has no unit amount (tiered or metered prices) or there are no items.
    """
    if not items:
        return None
    total = 0
    for item in items:
        price = as_object(item.get("price")) or as_object(item.get("plan"))
        unit = int_of(price.get("unit_amount"))
        if unit is None:
            unit = int_of(price.get("amount"))  # legacy plan objects
        if unit is None:
            return None
        quantity = int_of(item.get("quantity"))
        total += unit * (1 if quantity is None else quantity)
    return total


def _invoice_subscription(obj: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    """An invoice's subscription id and that subscription's metadata, in old and new API shapes.

    Up to API version 2025-02-24 they sit in ``subscription`` and ``subscription_details``;
    from 2025-03-31 in ``parent.subscription_details``.
    """
    details = as_object(as_object(obj.get("parent")).get("subscription_details"))
    if not details:
        details = as_object(obj.get("subscription_details"))
    subscription = id_of(obj.get("subscription")) or id_of(details.get("subscription"))
    return subscription, event_metadata(details)


def _invoice_payment_intent(obj: dict[str, Any]) -> str | None:
    """An invoice's payment intent: ``payment_intent`` in old API versions, an expanded
    ``payments`` list in new ones (absent from webhooks unless expanded)."""
    found = id_of(obj.get("payment_intent"))
    if found:
        return found
    payments = as_object(obj.get("payments")).get("data")
    for payment in payments if isinstance(payments, list) else []:
        found = id_of(as_object(as_object(payment).get("payment")).get("payment_intent"))
        if found:
            return found
    return None


def parse_stripe_event(body: bytes, *, processor: str = "stripe") -> NormalizedEvent:
    """A Stripe event (the JSON webhook body) in tenantry's terms.

    Raises ``ValueError`` for invalid JSON, or an event without ``id``, ``type``, ``created``
    or, for the types billing acts on, ``data.object``.
    """
    event = load_event(body)
    event_id, event_type = str(event["id"]), str(event["type"])
    created_at = unix_time(event.get("created"))
    if created_at is None:
        raise ValueError(f"Stripe event {event_id} has no 'created' timestamp")

    def ignored() -> NormalizedEvent:
        return NormalizedEvent(
            processor=processor,
            event_id=event_id,
            type=event_type,
            kind=EventKind.IGNORED,
            created_at=created_at,
        )

    payment_intent_kind = _PAYMENT_INTENT_KINDS.get(event_type)
    wanted = (
        payment_intent_kind is not None
        or event_type in {"checkout.session.completed", "charge.refunded", "invoice.paid"}
        or event_type.startswith(_SUBSCRIPTION_PREFIX)
    )
    if not wanted:
        return ignored()
    obj = as_object(event.get("data")).get("object")
    if not isinstance(obj, dict):
        raise ValueError(f"Stripe event {event_id} ({event_type}) has no data.object")
    common: dict[str, Any] = {
        "processor": processor,
        "event_id": event_id,
        "type": event_type,
        "created_at": created_at,
        "object_id": str_of(obj.get("id")),
        "customer_id": id_of(obj.get("customer")),
        "currency": currency_of(obj.get("currency")),
        "metadata": event_metadata(obj),
    }

    if payment_intent_kind is not None:
        received = int_of(obj.get("amount_received"))
        code, message = failure_of(obj)
        return NormalizedEvent(
            kind=payment_intent_kind,
            payment_intent_id=str_of(obj.get("id")),
            charge_id=id_of(obj.get("latest_charge")),
            invoice_id=id_of(obj.get("invoice")),
            amount_minor=received if received else int_of(obj.get("amount")),
            status=str_of(obj.get("status")),
            failure_code=code,
            failure_message=message,
            **common,
        )
    if event_type == "checkout.session.completed":
        return NormalizedEvent(
            kind=EventKind.CHECKOUT_COMPLETED,
            checkout_session_id=str_of(obj.get("id")),
            payment_intent_id=id_of(obj.get("payment_intent")),
            subscription_id=id_of(obj.get("subscription")),
            invoice_id=id_of(obj.get("invoice")),
            amount_minor=int_of(obj.get("amount_total")),
            status=str_of(obj.get("payment_status")),
            **common,
        )
    if event_type == "charge.refunded":
        return NormalizedEvent(
            kind=EventKind.CHARGE_REFUNDED,
            charge_id=str_of(obj.get("id")),
            payment_intent_id=id_of(obj.get("payment_intent")),
            invoice_id=id_of(obj.get("invoice")),
            amount_minor=int_of(obj.get("amount")),
            amount_refunded_minor=int_of(obj.get("amount_refunded")),
            status=str_of(obj.get("status")),
            **common,
        )
    if event_type == "invoice.paid":
        subscription, subscription_metadata = _invoice_subscription(obj)
        # Renewal invoices carry no metadata of their own: fall back on the subscription's.
        common["metadata"] = {**subscription_metadata, **common["metadata"]}
        return NormalizedEvent(
            kind=EventKind.INVOICE_PAID,
            invoice_id=str_of(obj.get("id")),
            subscription_id=subscription,
            payment_intent_id=_invoice_payment_intent(obj),
            charge_id=id_of(obj.get("charge")),
            amount_minor=int_of(obj.get("amount_paid")),
            status=str_of(obj.get("status")),
            **common,
        )
    # customer.subscription.*
    items = _subscription_items(obj)
    first = items[0] if items else {}
    if common["currency"] is None:
        common["currency"] = currency_of(as_object(first.get("price")).get("currency"))
    # API versions from 2025-03-31 moved the current period from the subscription to its items.
    start = unix_time(obj.get("current_period_start")) or unix_time(
        first.get("current_period_start")
    )
    end = unix_time(obj.get("current_period_end")) or unix_time(first.get("current_period_end"))
    deleted = event_type == f"{_SUBSCRIPTION_PREFIX}deleted"
    return NormalizedEvent(
        kind=EventKind.SUBSCRIPTION_DELETED if deleted else EventKind.SUBSCRIPTION_CHANGED,
        subscription_id=str_of(obj.get("id")),
        amount_minor=_subscription_amount(items),
        status=str_of(obj.get("status")),
        current_period_start=start,
        current_period_end=end,
        cancel_at_period_end=bool_of(obj.get("cancel_at_period_end")),
        **common,
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
