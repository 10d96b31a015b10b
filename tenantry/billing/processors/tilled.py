"""Tilled: ``tilled-signature`` webhooks and Tilled's event objects.

Tilled signs like Stripe (``t=…,v1=…``, HMAC-SHA256 of ``"{t}.{body}"``) but counts ``t`` in
MILLISECONDS. Its events carry ``id``, ``type``, an ISO 8601 ``created_at`` and the object in
``data`` (accepted also as ``data.object``). Its objects resemble Stripe's but name some
references ``…_id`` (``customer_id``, ``payment_intent_id``); both spellings are read. What is
read is declared below as strict shapes (:mod:`.shapes`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator

from tenantry.billing.processors.base import EventKind, MalformedEvent, NormalizedEvent
from tenantry.billing.processors.shapes import (
    MAX_UNIX_S,
    Amount,
    EventId,
    EventType,
    PaymentError,
    ProcessorObject,
    Ref,
    Shape,
    load_event,
    read,
)
from tenantry.billing.processors.signatures import verify_header

_PAYMENT_INTENT_KINDS = {
    "payment_intent.succeeded": EventKind.PAYMENT_SUCCEEDED,
    "payment_intent.payment_failed": EventKind.PAYMENT_FAILED,
    "payment_intent.processing": EventKind.PAYMENT_PROCESSING,
    "payment_intent.requires_action": EventKind.PAYMENT_REQUIRES_ACTION,
    "payment_intent.canceled": EventKind.PAYMENT_CANCELED,
}
_SUBSCRIPTION_PREFIX = "subscription."
# Unix timestamps at or above this are taken as milliseconds (it is 5138 AD in seconds).
_MS_THRESHOLD = 100_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def tilled_time(value: Any) -> datetime | None:
    """A Tilled timestamp as an aware UTC datetime; ``None`` for ``None`` or ``""``.

    Tilled sends ISO 8601 strings (``2022-11-10T23:29:06.802Z``); a string without an offset
    is taken as UTC. Integers are read as Unix seconds, or milliseconds when that large.
    Raises ``ValueError`` for anything else, or a time before 1970 or after 9999.
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
            moment = (
                parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
            )
        except (ValueError, OverflowError):
            raise ValueError("must be an ISO 8601 time or a Unix timestamp") from None
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        seconds = value / 1000 if value >= _MS_THRESHOLD else value
        if seconds > MAX_UNIX_S:
            raise ValueError("must be a time before the year 10000")
        moment = datetime.fromtimestamp(seconds, tz=UTC)
    else:
        raise ValueError("must be an ISO 8601 time or a Unix timestamp")
    if moment < _EPOCH:
        raise ValueError("must be a time after 1970")
    return moment


Time = Annotated[datetime | None, BeforeValidator(tilled_time)]


# --- What is read of Tilled's objects ----------------------------------------------------


class TilledEnvelope(Shape):
    """Every Tilled event: its id, type and when it happened."""

    id: EventId
    type: EventType
    created_at: Time


class TilledObject(ProcessorObject):
    """What every object read here may carry."""

    customer_id: Ref = None
    customer: Ref = None


class TilledPaymentIntent(TilledObject):
    amount: Amount | None = None
    amount_received: Amount | None = None
    last_payment_error: PaymentError | None = None


class TilledCharge(TilledObject):
    payment_intent_id: Ref = None
    payment_intent: Ref = None
    amount: Amount | None = None
    amount_captured: Amount | None = None
    amount_refunded: Amount | None = None


class TilledSubscription(TilledObject):
    """Tilled's subscriptions bill a flat ``price`` (minor units) every interval and say when
    the next payment falls due rather than when the period ends."""

    price: Amount | None = None
    amount: Amount | None = None
    current_period_start: Time = None
    current_period_end: Time = None
    next_payment_at: Time = None
    cancel_at_period_end: bool | None = None


def _event_object(event: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """The event's object and where it sits (``data``, or Stripe-like ``data.object``)."""
    data = event.get("data")
    if not isinstance(data, dict):
        return None
    nested = data.get("object")  # a Stripe-like envelope; Tilled objects have no "object" key
    return (nested, "data.object") if isinstance(nested, dict) else (data, "data")


def parse_tilled_event(body: bytes, *, processor: str = "tilled") -> NormalizedEvent:
    """A Tilled event (the JSON webhook body) in tenantry's terms.

    Raises :class:`MalformedEvent` for a body that is not JSON, an event without a valid
    ``id``, ``type`` or ``created_at`` or, for the types billing acts on, without an object
    in ``data``, or any field read of that object having the wrong type or range.
    """
    event = load_event(body)
    envelope = read(TilledEnvelope, event)
    if envelope.created_at is None:
        raise MalformedEvent("created_at", "the time the event happened is required")
    event_type, created_at = envelope.type, envelope.created_at
    payment_intent_kind = _PAYMENT_INTENT_KINDS.get(event_type)
    wanted = (
        payment_intent_kind is not None
        or event_type == "charge.refunded"
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
    found = _event_object(event)
    if found is None:
        raise MalformedEvent("data", f"a {event_type} event needs the object it is about")
    raw, where = found

    def common(obj: TilledObject) -> dict[str, Any]:
        return {
            "processor": processor,
            "event_id": envelope.id,
            "type": event_type,
            "created_at": created_at,
            "object_id": obj.id,
            "customer_id": obj.customer_id or obj.customer,
            "currency": obj.currency,
            "status": obj.status,
            "metadata": obj.meta,
        }

    if payment_intent_kind is not None:
        intent = read(TilledPaymentIntent, raw, where=where)
        error = intent.last_payment_error
        return NormalizedEvent(
            kind=payment_intent_kind,
            payment_intent_id=intent.id,
            amount_minor=intent.amount_received or intent.amount,
            failure_code=error.failure_code if error else None,
            failure_message=error.message if error else None,
            **common(intent),
        )
    if event_type == "charge.refunded":
        charge = read(TilledCharge, raw, where=where)
        return NormalizedEvent(
            kind=EventKind.CHARGE_REFUNDED,
            charge_id=charge.id,
            payment_intent_id=charge.payment_intent_id or charge.payment_intent,
            amount_minor=charge.amount if charge.amount is not None else charge.amount_captured,
            amount_refunded_minor=charge.amount_refunded,
            **common(charge),
        )
    # subscription.*
    sub = read(TilledSubscription, raw, where=where)
    canceled = event_type == f"{_SUBSCRIPTION_PREFIX}canceled"
    return NormalizedEvent(
        kind=EventKind.SUBSCRIPTION_DELETED if canceled else EventKind.SUBSCRIPTION_CHANGED,
        subscription_id=sub.id,
        amount_minor=sub.price if sub.price is not None else sub.amount,
        current_period_start=sub.current_period_start,
        current_period_end=sub.current_period_end or sub.next_payment_at,
        cancel_at_period_end=sub.cancel_at_period_end,
        **common(sub),
    )


class TilledProcessor:
    """Tilled's webhooks: ``tilled-signature`` (``t`` in milliseconds) and Tilled events."""

    name: str = "tilled"
    signature_header: str = "tilled-signature"

    def verify(
        self, body: bytes, header: str | None, secrets: list[str], *, now: float | None = None
    ) -> None:
        """Raise :class:`~tenantry.billing.processors.base.SignatureError` unless ``header``
        signs the raw ``body`` with one of ``secrets`` within the tolerance of ``now``
        (seconds, like every ``now`` in tenantry; the header's milliseconds are converted)."""
        verify_header(
            body,
            header,
            secrets,
            header_name=self.signature_header,
            units_per_second=1000,
            now=now,
        )

    def parse(self, body: bytes) -> NormalizedEvent:
        """The Tilled event in ``body`` (already verified), normalised."""
        return parse_tilled_event(body, processor=self.name)


#: The Tilled adapter.
TILLED = TilledProcessor()
