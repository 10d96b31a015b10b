"""What every payment processor adapter provides: signature checks and one event shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

#: Signed timestamps further than this from now, in the past or the future, are refused.
TOLERANCE_S = 300


class SignatureError(ValueError):
    """A webhook's signature is missing, malformed, stale or wrong. ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class MalformedEvent(ValueError):
    """A verified body the adapter cannot read as an event: not JSON, or a field it reads is
    missing, of the wrong type or out of range. ``field`` is that field's path (``"created"``,
    ``"data.object.amount"``), ``reason`` what is wrong with it. Permanent: the same body
    never reads better, so it is refused at ingestion and never retried."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class EventKind(StrEnum):
    """What an event means for billing, whatever the processor called it."""

    PAYMENT_SUCCEEDED = "payment_succeeded"
    PAYMENT_FAILED = "payment_failed"
    PAYMENT_PROCESSING = "payment_processing"
    PAYMENT_REQUIRES_ACTION = "payment_requires_action"
    PAYMENT_CANCELED = "payment_canceled"
    CHECKOUT_COMPLETED = "checkout_completed"
    CHARGE_REFUNDED = "charge_refunded"
    INVOICE_PAID = "invoice_paid"
    SUBSCRIPTION_CHANGED = "subscription_changed"  # created or updated
    SUBSCRIPTION_DELETED = "subscription_deleted"
    IGNORED = "ignored"  # a type billing does not act on


@dataclass(frozen=True)
class NormalizedEvent:
    """A processor event in tenantry's own terms. Amounts are minor units; currencies upper."""

    processor: str
    event_id: str
    type: str  # the processor's own type, e.g. "payment_intent.succeeded"
    kind: EventKind
    created_at: datetime  # when the processor says the event happened (timezone-aware)
    object_id: str | None = None  # the event object's id (pi_…, cs_…, ch_…, in_…, sub_…)
    payment_intent_id: str | None = None
    checkout_session_id: str | None = None
    charge_id: str | None = None
    invoice_id: str | None = None  # the processor's invoice id
    subscription_id: str | None = None  # the processor's subscription id
    customer_id: str | None = None  # the processor's customer id
    amount_minor: int | None = None
    amount_refunded_minor: int | None = None
    currency: str | None = None
    status: str | None = None  # the object's status as the processor names it
    failure_code: str | None = None
    failure_message: str | None = None
    current_period_start: datetime | None = None
    current_period_end: datetime | None = None
    cancel_at_period_end: bool | None = None
    #: The object's metadata: where apps put tenantry's ids (app_id, invoice_id, milestone_id,
    #: customer external id) when they create the checkout or payment.
    metadata: dict[str, str] = field(default_factory=dict)


class Processor(Protocol):
    """A payment processor adapter."""

    name: str
    signature_header: str  # the HTTP header carrying the signature

    def verify(
        self, body: bytes, header: str | None, secrets: list[str], *, now: float | None = None
    ) -> None:
        """Raise :class:`SignatureError` unless ``header`` signs ``body`` with one of
        ``secrets`` at a time within :data:`TOLERANCE_S` of ``now`` (default: the clock)."""

    def parse(self, body: bytes) -> NormalizedEvent:
        """The event in ``body`` (already verified), normalised. Raises
        :class:`MalformedEvent` for a body that is not an event of this processor."""
