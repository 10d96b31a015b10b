"""Payment processor adapters: webhook signatures (signed here, independently) and events."""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from tenantry.billing.processors import (
    PROCESSORS,
    STRIPE,
    TILLED,
    EventKind,
    NormalizedEvent,
    Processor,
    SignatureError,
    UnknownProcessorError,
    get_processor,
)
from tenantry.billing.processors.base import TOLERANCE_S

NOW = 1_700_000_000.0  # seconds, as every ``now`` given to verify
SECRET = "whsec_current_0123456789abcdef"
OLD_SECRET = "whsec_previous_fedcba9876543210"
BODY = b'{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}'


def hmac_hex(secret: str, timestamp: str, body: bytes) -> str:
    """What a processor sends: hex HMAC-SHA256 of ``"{t}." + body``. Independent of the code
    under test on purpose."""
    message = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Case:
    """A processor and how its header counts time."""

    processor: Processor
    units_per_second: int

    def t(self, offset_s: float = 0, now: float = NOW) -> str:
        """The header's ``t`` for ``now + offset_s``, in the processor's unit."""
        return str(round((now + offset_s) * self.units_per_second))

    def header(self, secret: str = SECRET, offset_s: float = 0, body: bytes = BODY) -> str:
        """A valid-looking header signed by ``secret`` at ``NOW + offset_s``."""
        t = self.t(offset_s)
        return f"t={t},v1={hmac_hex(secret, t, body)}"


CASES = [Case(STRIPE, 1), Case(TILLED, 1000)]


@pytest.fixture(params=CASES, ids=lambda case: case.processor.name)
def case(request: pytest.FixtureRequest) -> Case:
    """Each processor in turn."""
    result: Case = request.param
    return result


def refusal(case: Case, header: str | None, secrets: list[str] | None = None) -> str:
    """The reason ``verify`` gives for refusing ``header`` (fails the test if it accepts)."""
    with pytest.raises(SignatureError) as refused:
        case.processor.verify(BODY, header, [SECRET] if secrets is None else secrets, now=NOW)
    assert refused.value.reason == str(refused.value)
    return refused.value.reason


# --- Signatures ---------------------------------------------------------------------------


def test_valid_signature_passes(case: Case) -> None:
    case.processor.verify(BODY, case.header(), [SECRET], now=NOW)


def test_valid_signature_passes_on_the_real_clock(case: Case) -> None:
    now = time.time()
    t = case.t(now=now)
    case.processor.verify(BODY, f"t={t},v1={hmac_hex(SECRET, t, BODY)}", [SECRET])


@pytest.mark.parametrize("offset_s", [-(TOLERANCE_S + 1), TOLERANCE_S + 1], ids=["stale", "future"])
def test_timestamp_beyond_tolerance_is_refused(case: Case, offset_s: int) -> None:
    reason = refusal(case, case.header(offset_s=offset_s))
    assert reason == "timestamp outside the 300 s tolerance"


@pytest.mark.parametrize("offset_s", [-TOLERANCE_S, TOLERANCE_S], ids=["oldest", "newest"])
def test_timestamp_exactly_at_the_edge_passes(case: Case, offset_s: int) -> None:
    case.processor.verify(BODY, case.header(offset_s=offset_s), [SECRET], now=NOW)


def test_altered_body_is_refused(case: Case) -> None:
    header = case.header()
    with pytest.raises(SignatureError, match="no signature matches"):
        case.processor.verify(BODY.replace(b"pi_1", b"pi_2"), header, [SECRET], now=NOW)


def test_wrong_secret_is_refused(case: Case) -> None:
    assert refusal(case, case.header(secret="whsec_someone_else")) == "no signature matches"


def test_timestamp_is_signed_too(case: Case) -> None:
    signature = hmac_hex(SECRET, case.t(), BODY)
    assert refusal(case, f"t={case.t(offset_s=1)},v1={signature}") == "no signature matches"


@pytest.mark.parametrize("signer", [SECRET, OLD_SECRET])
def test_either_of_two_rotating_secrets_passes(case: Case, signer: str) -> None:
    case.processor.verify(BODY, case.header(secret=signer), [SECRET, OLD_SECRET], now=NOW)


def test_header_with_several_v1_passes_when_any_matches(case: Case) -> None:
    t = case.t()
    wrong = hmac_hex("whsec_retired", t, BODY)
    right = hmac_hex(SECRET, t, BODY)
    case.processor.verify(BODY, f"t={t},v1={wrong},v1={right}", [SECRET], now=NOW)
    case.processor.verify(BODY, f"t={t}, v1={wrong}, v1={right}, v0=abc", [SECRET], now=NOW)


def test_v0_only_header_is_refused(case: Case) -> None:
    t = case.t()
    reason = refusal(case, f"t={t},v0={hmac_hex(SECRET, t, BODY)}")
    assert "no v1 signature" in reason


def test_other_schemes_never_pass(case: Case) -> None:
    t = case.t()
    good = hmac_hex(SECRET, t, BODY)
    assert refusal(case, f"t={t},v1=deadbeef,v2={good}") == "no signature matches"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header_is_refused(case: Case, header: str | None) -> None:
    assert refusal(case, header) == f"missing {case.processor.signature_header} header"


@pytest.mark.parametrize(
    ("header", "why"),
    [
        ("garbage", "malformed"),
        ("t=abc,v1=x", "timestamp is not an integer"),
        ("t=+1700000000,v1=x", "timestamp is not an integer"),
        ("t=,v1=x", "timestamp is not an integer"),
        ("v1=abc", "no timestamp"),
        ("t=1700000000", "no v1 signature"),
        ("t=1700000000,v1=", "no v1 signature"),
        ("t=1700000000,t=1700000001,v1=abc", "more than one timestamp"),
    ],
)
def test_malformed_header_is_refused(case: Case, header: str, why: str) -> None:
    reason = refusal(case, header)
    assert reason.startswith(f"malformed {case.processor.signature_header} header")
    assert why in reason


def test_non_ascii_signature_is_refused_not_crashed(case: Case) -> None:
    assert refusal(case, f"t={case.t()},v1=é") == "no signature matches"


@pytest.mark.parametrize("secrets", [[], [""]], ids=["none", "empty-string"])
def test_no_usable_secret_is_refused(case: Case, secrets: list[str]) -> None:
    # Signed with an empty key: accepting it would let anyone sign.
    reason = refusal(case, case.header(secret=""), secrets)
    assert reason == "no webhook signing secret configured"


def test_tilled_timestamp_is_in_milliseconds() -> None:
    t_ms = str(int(NOW * 1000) + 1234)  # with a millisecond part, signed as sent
    TILLED.verify(BODY, f"t={t_ms},v1={hmac_hex(SECRET, t_ms, BODY)}", [SECRET], now=NOW)
    t_s = str(int(NOW))  # seconds, read as milliseconds: January 1970
    with pytest.raises(SignatureError, match="outside the 300 s tolerance"):
        TILLED.verify(BODY, f"t={t_s},v1={hmac_hex(SECRET, t_s, BODY)}", [SECRET], now=NOW)


def test_stripe_timestamp_is_in_seconds() -> None:
    t_ms = str(int(NOW * 1000))
    with pytest.raises(SignatureError, match="outside the 300 s tolerance"):
        STRIPE.verify(BODY, f"t={t_ms},v1={hmac_hex(SECRET, t_ms, BODY)}", [SECRET], now=NOW)


def test_tilled_edge_is_exact_to_the_millisecond() -> None:
    t_ok = str(int(NOW * 1000) - TOLERANCE_S * 1000)
    TILLED.verify(BODY, f"t={t_ok},v1={hmac_hex(SECRET, t_ok, BODY)}", [SECRET], now=NOW)
    t_late = str(int(NOW * 1000) - TOLERANCE_S * 1000 - 1)
    with pytest.raises(SignatureError, match="tolerance"):
        TILLED.verify(BODY, f"t={t_late},v1={hmac_hex(SECRET, t_late, BODY)}", [SECRET], now=NOW)


def test_header_from_stripes_own_library_passes() -> None:
    # The test extras install stripe: a missing package is a failure, never a silent skip.
    stripe: Any = importlib.import_module("stripe")
    payload = BODY.decode()
    timestamp = int(NOW)
    signature_class = stripe.WebhookSignature
    if hasattr(signature_class, "generate_signature_header"):
        header = signature_class.generate_signature_header(payload, SECRET, timestamp=timestamp)
    else:
        signature = signature_class._compute_signature(f"{timestamp}.{payload}", SECRET)
        header = f"t={timestamp},v1={signature}"
    STRIPE.verify(BODY, header, [SECRET], now=NOW)
    # And the library accepts what these tests sign, so both agree on the scheme.
    assert signature_class.verify_header(payload, Case(STRIPE, 1).header(), SECRET, tolerance=0)


# --- Registry -----------------------------------------------------------------------------


def test_get_processor_by_name() -> None:
    assert get_processor("stripe") is STRIPE
    assert get_processor(" Tilled ") is TILLED
    assert set(PROCESSORS) == {"stripe", "tilled"}
    assert all(name == processor.name for name, processor in PROCESSORS.items())
    assert STRIPE.signature_header == "Stripe-Signature"
    assert TILLED.signature_header == "tilled-signature"


def test_unknown_processor_is_a_clear_key_error() -> None:
    with pytest.raises(KeyError) as unknown:
        get_processor("paypal")
    assert isinstance(unknown.value, UnknownProcessorError)
    assert str(unknown.value) == "unknown payment processor 'paypal' (known: stripe, tilled)"


# --- Stripe events ------------------------------------------------------------------------

CREATED = 1_700_000_123
CREATED_AT = datetime(2023, 11, 14, 22, 15, 23, tzinfo=UTC)


def stripe_event(event_type: str, obj: dict[str, Any], **extra: Any) -> bytes:
    """A Stripe event body as Stripe sends it."""
    event = {
        "id": "evt_1OabcDEF",
        "object": "event",
        "api_version": "2024-06-20",
        "created": CREATED,
        "data": {"object": obj, "previous_attributes": {}},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": "req_123", "idempotency_key": "key-1"},
        "type": event_type,
        **extra,
    }
    return json.dumps(event).encode()


def payment_intent(**changes: Any) -> dict[str, Any]:
    """A Stripe PaymentIntent."""
    return {
        "id": "pi_3OabcDEF",
        "object": "payment_intent",
        "amount": 2500,
        "amount_capturable": 0,
        "amount_received": 2500,
        "capture_method": "automatic",
        "client_secret": "pi_3OabcDEF_secret_xyz",
        "created": 1_700_000_100,
        "currency": "eur",
        "customer": "cus_PabcDEF",
        "description": "Invoice INV-7",
        "invoice": None,
        "last_payment_error": None,
        "latest_charge": "ch_3OabcDEF",
        "livemode": False,
        "metadata": {"app_id": "shop", "invoice_id": "42", "milestone_id": "7"},
        "payment_method": "pm_1OabcDEF",
        "status": "succeeded",
        **changes,
    }


def test_stripe_payment_succeeded() -> None:
    event = STRIPE.parse(stripe_event("payment_intent.succeeded", payment_intent()))
    assert event == NormalizedEvent(
        processor="stripe",
        event_id="evt_1OabcDEF",
        type="payment_intent.succeeded",
        kind=EventKind.PAYMENT_SUCCEEDED,
        created_at=CREATED_AT,
        object_id="pi_3OabcDEF",
        payment_intent_id="pi_3OabcDEF",
        charge_id="ch_3OabcDEF",
        customer_id="cus_PabcDEF",
        amount_minor=2500,
        currency="EUR",
        status="succeeded",
        metadata={"app_id": "shop", "invoice_id": "42", "milestone_id": "7"},
    )
    assert event.created_at.tzinfo is not None
    assert event.created_at.timestamp() == CREATED


def test_stripe_payment_succeeded_prefers_amount_received() -> None:
    body = stripe_event("payment_intent.succeeded", payment_intent(amount_received=1800))
    assert STRIPE.parse(body).amount_minor == 1800


def test_stripe_payment_failed_carries_the_error() -> None:
    error = {
        "charge": "ch_3Ofail",
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "doc_url": "https://stripe.com/docs/error-codes/card-declined",
        "message": "Your card has insufficient funds.",
        "type": "card_error",
    }
    obj = payment_intent(
        amount_received=0, status="requires_payment_method", last_payment_error=error
    )
    event = STRIPE.parse(stripe_event("payment_intent.payment_failed", obj))
    assert event.kind is EventKind.PAYMENT_FAILED
    assert event.amount_minor == 2500
    assert event.status == "requires_payment_method"
    assert event.failure_code == "card_declined"
    assert event.failure_message == "Your card has insufficient funds."
    assert event.metadata["invoice_id"] == "42"


@pytest.mark.parametrize(
    ("event_type", "status", "kind"),
    [
        ("payment_intent.processing", "processing", EventKind.PAYMENT_PROCESSING),
        ("payment_intent.requires_action", "requires_action", EventKind.PAYMENT_REQUIRES_ACTION),
        ("payment_intent.canceled", "canceled", EventKind.PAYMENT_CANCELED),
    ],
)
def test_stripe_payment_intent_states(event_type: str, status: str, kind: EventKind) -> None:
    obj = payment_intent(amount_received=0, status=status, latest_charge=None)
    event = STRIPE.parse(stripe_event(event_type, obj))
    assert (event.kind, event.status, event.type) == (kind, status, event_type)
    assert (event.payment_intent_id, event.amount_minor, event.currency) == (
        "pi_3OabcDEF",
        2500,
        "EUR",
    )
    assert event.charge_id is None


def test_stripe_expanded_customer_reads_its_id() -> None:
    obj = payment_intent(customer={"id": "cus_X", "object": "customer", "email": "a@b.c"})
    assert STRIPE.parse(stripe_event("payment_intent.succeeded", obj)).customer_id == "cus_X"


def test_stripe_checkout_completed() -> None:
    session = {
        "id": "cs_test_a1B2c3",
        "object": "checkout.session",
        "amount_subtotal": 4900,
        "amount_total": 5880,
        "client_reference_id": "tenant-9",
        "currency": "usd",
        "customer": "cus_Q1",
        "customer_details": {"email": "buyer@example.com", "name": "Ada"},
        "invoice": "in_1Q",
        "metadata": {"app_id": "crm", "customer_external_id": "ext-9"},
        "mode": "subscription",
        "payment_intent": None,
        "payment_status": "paid",
        "status": "complete",
        "subscription": "sub_1Q",
        "url": None,
    }
    event = STRIPE.parse(stripe_event("checkout.session.completed", session))
    assert event.kind is EventKind.CHECKOUT_COMPLETED
    assert event.checkout_session_id == event.object_id == "cs_test_a1B2c3"
    assert event.payment_intent_id is None
    assert (event.amount_minor, event.currency, event.status) == (5880, "USD", "paid")
    assert (event.customer_id, event.subscription_id, event.invoice_id) == (
        "cus_Q1",
        "sub_1Q",
        "in_1Q",
    )
    assert event.metadata == {"app_id": "crm", "customer_external_id": "ext-9"}

    payment = {**session, "mode": "payment", "payment_intent": "pi_9", "subscription": None}
    event = STRIPE.parse(stripe_event("checkout.session.completed", payment))
    assert (event.payment_intent_id, event.subscription_id) == ("pi_9", None)


def test_stripe_charge_refunded() -> None:
    charge = {
        "id": "ch_3Oref",
        "object": "charge",
        "amount": 5000,
        "amount_captured": 5000,
        "amount_refunded": 2000,
        "captured": True,
        "currency": "gbp",
        "customer": "cus_R",
        "metadata": {"app_id": "shop", "invoice_id": "77"},
        "paid": True,
        "payment_intent": "pi_3Oref",
        "refunded": False,
        "status": "succeeded",
    }
    event = STRIPE.parse(stripe_event("charge.refunded", charge))
    assert event.kind is EventKind.CHARGE_REFUNDED
    assert (event.charge_id, event.payment_intent_id) == ("ch_3Oref", "pi_3Oref")
    assert (event.amount_minor, event.amount_refunded_minor, event.currency) == (5000, 2000, "GBP")
    assert event.metadata == {"app_id": "shop", "invoice_id": "77"}


def invoice(**changes: Any) -> dict[str, Any]:
    """A paid Stripe Invoice as API versions up to 2025-02-24 render it."""
    return {
        "id": "in_1Oinv",
        "object": "invoice",
        "amount_due": 1500,
        "amount_paid": 1500,
        "amount_remaining": 0,
        "billing_reason": "subscription_cycle",
        "charge": "ch_inv",
        "currency": "usd",
        "customer": "cus_I",
        "metadata": {},
        "paid": True,
        "payment_intent": "pi_inv",
        "status": "paid",
        "subscription": "sub_I",
        "subscription_details": {"metadata": {"app_id": "crm", "plan": "pro"}},
        **changes,
    }


def test_stripe_invoice_paid() -> None:
    event = STRIPE.parse(stripe_event("invoice.paid", invoice()))
    assert event.kind is EventKind.INVOICE_PAID
    assert (event.invoice_id, event.subscription_id, event.customer_id) == (
        "in_1Oinv",
        "sub_I",
        "cus_I",
    )
    assert (event.amount_minor, event.currency, event.status) == (1500, "USD", "paid")
    assert (event.payment_intent_id, event.charge_id) == ("pi_inv", "ch_inv")
    # A renewal invoice has no metadata of its own: the subscription's stands in for it.
    assert event.metadata == {"app_id": "crm", "plan": "pro"}


def test_stripe_invoice_paid_own_metadata_wins() -> None:
    obj = invoice(metadata={"plan": "enterprise", "invoice_id": "5"})
    event = STRIPE.parse(stripe_event("invoice.paid", obj))
    assert event.metadata == {"app_id": "crm", "plan": "enterprise", "invoice_id": "5"}


def test_stripe_invoice_paid_in_the_2025_shape() -> None:
    obj = invoice(
        parent={
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"metadata": {"app_id": "crm"}, "subscription": "sub_N"},
        },
        payments={
            "object": "list",
            "data": [
                {"id": "inpay_1", "payment": {"type": "payment_intent", "payment_intent": "pi_N"}}
            ],
        },
    )
    for legacy in ("subscription", "subscription_details", "payment_intent", "charge"):
        del obj[legacy]
    event = STRIPE.parse(stripe_event("invoice.paid", obj))
    assert (event.subscription_id, event.payment_intent_id, event.charge_id) == (
        "sub_N",
        "pi_N",
        None,
    )
    assert event.metadata == {"app_id": "crm"}


def subscription(**changes: Any) -> dict[str, Any]:
    """A Stripe Subscription with its period on the subscription (API before 2025-03-31)."""
    return {
        "id": "sub_1Osub",
        "object": "subscription",
        "cancel_at_period_end": False,
        "currency": "usd",
        "current_period_start": 1_700_000_000,
        "current_period_end": 1_702_592_000,
        "customer": "cus_S",
        "items": {
            "object": "list",
            "data": [
                {
                    "id": "si_1",
                    "object": "subscription_item",
                    "price": {
                        "id": "price_pro",
                        "object": "price",
                        "currency": "usd",
                        "recurring": {"interval": "month", "interval_count": 1},
                        "unit_amount": 1200,
                    },
                    "quantity": 3,
                }
            ],
        },
        "metadata": {"app_id": "crm", "customer_external_id": "acme"},
        "status": "active",
        **changes,
    }


def test_stripe_subscription_updated() -> None:
    event = STRIPE.parse(stripe_event("customer.subscription.updated", subscription()))
    assert event.kind is EventKind.SUBSCRIPTION_CHANGED
    assert (event.subscription_id, event.customer_id, event.status) == (
        "sub_1Osub",
        "cus_S",
        "active",
    )
    assert event.current_period_start == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert event.current_period_end == datetime(2023, 12, 14, 22, 13, 20, tzinfo=UTC)
    assert event.cancel_at_period_end is False
    assert (event.amount_minor, event.currency) == (3600, "USD")
    assert event.metadata == {"app_id": "crm", "customer_external_id": "acme"}


def test_stripe_subscription_period_on_items() -> None:
    obj = subscription(cancel_at_period_end=True)
    del obj["current_period_start"], obj["current_period_end"], obj["currency"]
    item = obj["items"]["data"][0]
    item.update(current_period_start=1_700_000_000, current_period_end=1_702_592_000)
    del item["quantity"]
    event = STRIPE.parse(stripe_event("customer.subscription.updated", obj))
    assert event.current_period_start == datetime.fromtimestamp(1_700_000_000, UTC)
    assert event.current_period_end == datetime.fromtimestamp(1_702_592_000, UTC)
    assert event.cancel_at_period_end is True
    assert (event.amount_minor, event.currency) == (1200, "USD")


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [
        ("customer.subscription.created", EventKind.SUBSCRIPTION_CHANGED),
        ("customer.subscription.trial_will_end", EventKind.SUBSCRIPTION_CHANGED),
        ("customer.subscription.paused", EventKind.SUBSCRIPTION_CHANGED),
        ("customer.subscription.resumed", EventKind.SUBSCRIPTION_CHANGED),
        ("customer.subscription.deleted", EventKind.SUBSCRIPTION_DELETED),
    ],
)
def test_stripe_subscription_kinds(event_type: str, kind: EventKind) -> None:
    event = STRIPE.parse(stripe_event(event_type, subscription(status="canceled")))
    assert (event.kind, event.subscription_id, event.status) == (kind, "sub_1Osub", "canceled")


def test_stripe_subscription_without_unit_amount_has_no_amount() -> None:
    obj = subscription()
    obj["items"]["data"][0]["price"]["unit_amount"] = None  # tiered price
    assert STRIPE.parse(stripe_event("customer.subscription.updated", obj)).amount_minor is None


@pytest.mark.parametrize(
    "event_type", ["customer.created", "invoice.payment_failed", "charge.succeeded", "ping"]
)
def test_stripe_other_types_are_ignored(event_type: str) -> None:
    event = STRIPE.parse(stripe_event(event_type, {"id": "cus_1", "object": "customer"}))
    assert event.kind is EventKind.IGNORED
    assert (event.event_id, event.type, event.created_at) == (
        "evt_1OabcDEF",
        event_type,
        CREATED_AT,
    )


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"type": "payment_intent.succeeded", "created": 1}',
        b'{"id": "evt_1", "created": 1}',
        b'{"id": "evt_1", "type": 7, "created": 1}',
        b'{"id": "evt_1", "type": "customer.created"}',
        b'{"id": "evt_1", "type": "payment_intent.succeeded", "created": 1, "data": {}}',
    ],
)
def test_stripe_bad_bodies_raise_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the fault
        STRIPE.parse(body)


# --- Tilled events ------------------------------------------------------------------------


def tilled_event(event_type: str, obj: dict[str, Any], *, nested: bool = False) -> bytes:
    """A Tilled event body: the object in ``data`` (or, ``nested``, in ``data.object``)."""
    event = {
        "id": "evt_TiLLed123",
        "account_id": "acct_merchant1",
        "created_at": "2023-11-14T22:15:23.456Z",
        "updated_at": "2023-11-14T22:15:23.456Z",
        "data": {"object": obj} if nested else obj,
        "type": event_type,
    }
    return json.dumps(event).encode()


def tilled_payment_intent(**changes: Any) -> dict[str, Any]:
    """A Tilled PaymentIntent."""
    return {
        "id": "pi_TiLLedPI",
        "account_id": "acct_merchant1",
        "amount": 10_000,
        "amount_capturable": 0,
        "amount_received": 10_000,
        "capture_method": "automatic",
        "charges": [],
        "created_at": "2023-11-14T22:15:20.000Z",
        "currency": "usd",
        "customer_id": "cus_TiLLed",
        "last_payment_error": None,
        "metadata": {"app_id": "shop", "invoice_id": "99"},
        "payment_method_types": ["card"],
        "status": "succeeded",
        "updated_at": "2023-11-14T22:15:23.000Z",
        **changes,
    }


TILLED_CREATED_AT = datetime(2023, 11, 14, 22, 15, 23, 456_000, tzinfo=UTC)


@pytest.mark.parametrize("nested", [False, True], ids=["data", "data.object"])
def test_tilled_payment_succeeded(nested: bool) -> None:
    event = TILLED.parse(
        tilled_event("payment_intent.succeeded", tilled_payment_intent(), nested=nested)
    )
    assert event == NormalizedEvent(
        processor="tilled",
        event_id="evt_TiLLed123",
        type="payment_intent.succeeded",
        kind=EventKind.PAYMENT_SUCCEEDED,
        created_at=TILLED_CREATED_AT,
        object_id="pi_TiLLedPI",
        payment_intent_id="pi_TiLLedPI",
        customer_id="cus_TiLLed",
        amount_minor=10_000,
        currency="USD",
        status="succeeded",
        metadata={"app_id": "shop", "invoice_id": "99"},
    )
    assert event.created_at.tzinfo is not None


def test_tilled_payment_failed() -> None:
    obj = tilled_payment_intent(
        amount_received=0,
        status="requires_payment_method",
        last_payment_error={"charge_id": "ch_x", "code": "card_declined", "message": "Declined"},
    )
    event = TILLED.parse(tilled_event("payment_intent.payment_failed", obj))
    assert event.kind is EventKind.PAYMENT_FAILED
    assert (event.amount_minor, event.failure_code, event.failure_message) == (
        10_000,
        "card_declined",
        "Declined",
    )


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [
        ("payment_intent.processing", EventKind.PAYMENT_PROCESSING),
        ("payment_intent.requires_action", EventKind.PAYMENT_REQUIRES_ACTION),
        ("payment_intent.canceled", EventKind.PAYMENT_CANCELED),
    ],
)
def test_tilled_payment_intent_states(event_type: str, kind: EventKind) -> None:
    event = TILLED.parse(tilled_event(event_type, tilled_payment_intent(amount_received=0)))
    assert (event.kind, event.payment_intent_id, event.amount_minor) == (
        kind,
        "pi_TiLLedPI",
        10_000,
    )


def test_tilled_charge_refunded() -> None:
    charge = {
        "id": "ch_TiLLedCH",
        "amount_captured": 10_000,
        "amount_refunded": 2_500,
        "captured": True,
        "created_at": "2023-11-14T22:15:20.000Z",
        "currency": "cad",
        "payment_intent_id": "pi_TiLLedPI",
        "refunded": False,
        "refunds": [{"id": "rf_1", "amount": 2_500, "status": "succeeded"}],
        "status": "succeeded",
    }
    event = TILLED.parse(tilled_event("charge.refunded", charge))
    assert event.kind is EventKind.CHARGE_REFUNDED
    assert (event.charge_id, event.payment_intent_id) == ("ch_TiLLedCH", "pi_TiLLedPI")
    assert (event.amount_minor, event.amount_refunded_minor, event.currency) == (
        10_000,
        2_500,
        "CAD",
    )
    assert event.metadata == {}


def tilled_subscription(**changes: Any) -> dict[str, Any]:
    """A Tilled Subscription."""
    return {
        "id": "sub_TiLLedSUB",
        "account_id": "acct_merchant1",
        "billing_cycle_anchor": "2023-11-14T00:00:00.000Z",
        "cancel_at": None,
        "canceled_at": None,
        "created_at": "2023-11-14T22:15:20.000Z",
        "currency": "usd",
        "customer_id": "cus_TiLLed",
        "interval_count": 1,
        "interval_unit": "month",
        "metadata": {"app_id": "crm"},
        "next_payment_at": "2023-12-14T00:00:00.000Z",
        "payment_method_id": "pm_TiLLed",
        "price": 4_900,
        "status": "active",
        **changes,
    }


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [
        ("subscription.created", EventKind.SUBSCRIPTION_CHANGED),
        ("subscription.updated", EventKind.SUBSCRIPTION_CHANGED),
        ("subscription.paused", EventKind.SUBSCRIPTION_CHANGED),
        ("subscription.canceled", EventKind.SUBSCRIPTION_DELETED),
    ],
)
def test_tilled_subscription_events(event_type: str, kind: EventKind) -> None:
    event = TILLED.parse(tilled_event(event_type, tilled_subscription()))
    assert event.kind is kind
    assert (event.subscription_id, event.customer_id, event.status) == (
        "sub_TiLLedSUB",
        "cus_TiLLed",
        "active",
    )
    assert (event.amount_minor, event.currency) == (4_900, "USD")
    assert event.current_period_end == datetime(2023, 12, 14, tzinfo=UTC)
    assert event.metadata == {"app_id": "crm"}


@pytest.mark.parametrize(
    "event_type", ["account.updated", "payment_method.attached", "charge.succeeded"]
)
def test_tilled_other_types_are_ignored(event_type: str) -> None:
    event = TILLED.parse(tilled_event(event_type, {"id": "x_1"}))
    assert (event.kind, event.type, event.created_at) == (
        EventKind.IGNORED,
        event_type,
        TILLED_CREATED_AT,
    )


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b'"evt"',
        b'{"type": "payment_intent.succeeded", "created_at": "2023-11-14T22:15:23Z"}',
        b'{"id": "evt_1", "created_at": "2023-11-14T22:15:23Z"}',
        b'{"id": "evt_1", "type": "account.updated"}',
        b'{"id": "evt_1", "type": "account.updated", "created_at": "yesterday"}',
        b'{"id": "evt_1", "type": "charge.refunded", "created_at": "2023-11-14T22:15:23Z"}',
    ],
)
def test_tilled_bad_bodies_raise_value_error(body: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the fault
        TILLED.parse(body)
