"""Tilled: ``tilled-signature`` webhooks and Tilled's event objects.

Tilled signs like Stripe (``t=…,v1=…``, HMAC-SHA256 of ``"{t}.{body}"``) but counts ``t`` in
MILLISECONDS. Its events carry ``id``, ``type``, an ISO 8601 ``created_at`` and the object in
``data`` (accepted also as ``data.object``). Its objects resemble Stripe's but name some
references ``…_id`` (``customer_id``, ``payment_intent_id``); both spellings are read.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tenantry.billing.processors.base import EventKind, NormalizedEvent, event_metadata
from tenantry.billing.processors.signatures import verify_header
from tenantry.billing.processors.stripe import (
    bool_of,
    currency_of,
    failure_of,
    id_of,
    int_of,
    load_event,
    str_of,
)

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


def tilled_time(value: Any) -> datetime | None:
    """A Tilled timestamp as an aware datetime, or ``None``.

    Tilled sends ISO 8601 strings (``2022-11-10T23:29:06.802Z``); a string without an offset
    is taken as UTC. Numbers are read as Unix seconds, or milliseconds when that large.
    """
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    number = int_of(value)
    if number is None:
        return None
    seconds = number / 1000 if number >= _MS_THRESHOLD else number
    return datetime.fromtimestamp(seconds, tz=UTC)


def _ref(obj: dict[str, Any], name: str) -> str | None:
    """A reference Tilled names ``{name}_id`` (or, Stripe-like, ``{name}``)."""
    return id_of(obj.get(f"{name}_id")) or id_of(obj.get(name))


def _event_object(event: dict[str, Any]) -> dict[str, Any] | None:
    data = event.get("data")
    if not isinstance(data, dict):
        return None
    nested = data.get("object")  # a Stripe-like envelope; Tilled objects have no "object" key
    return nested if isinstance(nested, dict) else data


def parse_tilled_event(body: bytes, *, processor: str = "tilled") -> NormalizedEvent:
    """A Tilled event (the JSON webhook body) in tenantry's terms.

    Raises ``ValueError`` for invalid JSON, or an event without ``id``, ``type``,
    ``created_at`` or, for the types billing acts on, an object in ``data``.
    """
    event = load_event(body)
    event_id, event_type = str(event["id"]), str(event["type"])
    created_at = tilled_time(event.get("created_at"))
    if created_at is None:
        raise ValueError(f"Tilled event {event_id} has no valid 'created_at'")

    payment_intent_kind = _PAYMENT_INTENT_KINDS.get(event_type)
    wanted = (
        payment_intent_kind is not None
        or event_type == "charge.refunded"
        or event_type.startswith(_SUBSCRIPTION_PREFIX)
    )
    if not wanted:
        return NormalizedEvent(
            processor=processor,
            event_id=event_id,
            type=event_type,
            kind=EventKind.IGNORED,
            created_at=created_at,
        )
    obj = _event_object(event)
    if obj is None:
        raise ValueError(f"Tilled event {event_id} ({event_type}) has no object in data")
    common: dict[str, Any] = {
        "processor": processor,
        "event_id": event_id,
        "type": event_type,
        "created_at": created_at,
        "object_id": str_of(obj.get("id")),
        "customer_id": _ref(obj, "customer"),
        "currency": currency_of(obj.get("currency")),
        "status": str_of(obj.get("status")),
        "metadata": event_metadata(obj),
    }

    if payment_intent_kind is not None:
        received = int_of(obj.get("amount_received"))
        code, message = failure_of(obj)
        return NormalizedEvent(
            kind=payment_intent_kind,
            payment_intent_id=str_of(obj.get("id")),
            amount_minor=received if received else int_of(obj.get("amount")),
            failure_code=code,
            failure_message=message,
            **common,
        )
    if event_type == "charge.refunded":
        amount = int_of(obj.get("amount"))
        return NormalizedEvent(
            kind=EventKind.CHARGE_REFUNDED,
            charge_id=str_of(obj.get("id")),
            payment_intent_id=_ref(obj, "payment_intent"),
            amount_minor=amount if amount is not None else int_of(obj.get("amount_captured")),
            amount_refunded_minor=int_of(obj.get("amount_refunded")),
            **common,
        )
    # subscription.*: Tilled's subscriptions bill a flat ``price`` (minor units) every
    # interval and say when the next payment falls due rather than when the period ends.
    amount = int_of(obj.get("price"))
    end = tilled_time(obj.get("current_period_end")) or tilled_time(obj.get("next_payment_at"))
    canceled = event_type == f"{_SUBSCRIPTION_PREFIX}canceled"
    return NormalizedEvent(
        kind=EventKind.SUBSCRIPTION_DELETED if canceled else EventKind.SUBSCRIPTION_CHANGED,
        subscription_id=str_of(obj.get("id")),
        amount_minor=amount if amount is not None else int_of(obj.get("amount")),
        current_period_start=tilled_time(obj.get("current_period_start")),
        current_period_end=end,
        cancel_at_period_end=bool_of(obj.get("cancel_at_period_end")),
        **common,
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
