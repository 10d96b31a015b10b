"""Events the adapters cannot read: one error type, naming the field, for every shape fault."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from tenantry.billing.processors import STRIPE, TILLED, EventKind, NormalizedEvent, Processor
from tenantry.billing.processors.base import MalformedEvent
from tests.billing import test_processors as real

BIG = 2**63


def stripe(event_type: str = "payment_intent.succeeded", **obj: Any) -> dict[str, Any]:
    """A valid Stripe event of ``event_type`` whose object carries ``obj``."""
    return {
        "id": "evt_1",
        "object": "event",
        "type": event_type,
        "created": 1_700_000_000,
        "data": {
            "object": {
                "id": "pi_1",
                "amount": 100,
                "currency": "usd",
                "customer": "cus_1",
                "metadata": {"app_id": "acme"},
                **obj,
            }
        },
    }


def tilled(event_type: str = "payment_intent.succeeded", **obj: Any) -> dict[str, Any]:
    """A valid Tilled event of ``event_type`` whose object (in ``data``) carries ``obj``."""
    return {
        "id": "evt_T1",
        "type": event_type,
        "created_at": "2023-11-14T22:15:23.456Z",
        "data": {"id": "pi_T1", "amount": 100, "currency": "usd", "customer_id": "cus_T", **obj},
    }


def without(event: dict[str, Any], *path: str) -> dict[str, Any]:
    """``event`` with the key at ``path`` removed."""
    changed = copy.deepcopy(event)
    target = changed
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return changed


def with_(event: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    """``event`` with the key at ``path`` set to ``value``."""
    changed = copy.deepcopy(event)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


OBJ = ("data", "object")
#: (event, the field the error must name), each signed and valid JSON.
STRIPE_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "no-created": (without(stripe(), "created"), "created"),
    "created-string": (with_(stripe(), "1700000000", "created"), "created"),
    "created-float": (with_(stripe(), 1.7e9, "created"), "created"),
    "created-negative": (with_(stripe(), -1, "created"), "created"),
    "created-year-10000": (with_(stripe(), 10**12, "created"), "created"),
    "created-bool": (with_(stripe(), True, "created"), "created"),
    "no-id": (without(stripe(), "id"), "id"),
    "id-empty": (with_(stripe(), "", "id"), "id"),
    "id-number": (with_(stripe(), 7, "id"), "id"),
    "id-too-long": (with_(stripe(), "e" * 256, "id"), "id"),
    "id-nul": (with_(stripe(), "evt\x00", "id"), "id"),
    "id-newline": (with_(stripe(), "evt\n1", "id"), "id"),
    "no-type": (without(stripe(), "type"), "type"),
    "type-list": (with_(stripe(), ["x"], "type"), "type"),
    "type-too-long": (with_(stripe(), "t" * 129, "type"), "type"),
    "no-data": (without(stripe(), "data"), "data.object"),
    "data-string": (with_(stripe(), "x", "data"), "data.object"),
    "no-object": (without(stripe(), "data", "object"), "data.object"),
    "object-list": (with_(stripe(), [], *OBJ), "data.object"),
    "amount-string": (with_(stripe(), "100", *OBJ, "amount"), "data.object.amount"),
    "amount-float": (with_(stripe(), 1.5, *OBJ, "amount"), "data.object.amount"),
    "amount-negative": (with_(stripe(), -5, *OBJ, "amount"), "data.object.amount"),
    "amount-2^63": (with_(stripe(), BIG, *OBJ, "amount"), "data.object.amount"),
    "received-bool": (
        with_(stripe(), True, *OBJ, "amount_received"),
        "data.object.amount_received",
    ),
    "currency-number": (with_(stripe(), 840, *OBJ, "currency"), "data.object.currency"),
    "currency-long": (with_(stripe(), "dollars", *OBJ, "currency"), "data.object.currency"),
    "customer-number": (with_(stripe(), 5, *OBJ, "customer"), "data.object.customer"),
    "customer-expanded-bad-id": (
        with_(stripe(), {"id": 5}, *OBJ, "customer"),
        "data.object.customer",
    ),
    "metadata-list": (with_(stripe(), ["a"], *OBJ, "metadata"), "data.object.metadata"),
    "metadata-value-number": (
        with_(stripe(), {"invoice_id": 5}, *OBJ, "metadata"),
        "data.object.metadata.invoice_id",
    ),
    "metadata-value-nul": (
        with_(stripe(), {"k": "a\x00b"}, *OBJ, "metadata"),
        "data.object.metadata.k",
    ),
    "error-code-number": (
        with_(stripe("payment_intent.payment_failed"), {"code": 1}, *OBJ, "last_payment_error"),
        "data.object.last_payment_error.code",
    ),
    "checkout-total-string": (
        stripe("checkout.session.completed", amount_total="10"),
        "data.object.amount_total",
    ),
    "refund-amount-huge": (
        stripe("charge.refunded", amount_refunded=BIG),
        "data.object.amount_refunded",
    ),
    "invoice-paid-payments-not-list": (
        stripe("invoice.paid", payments={"data": "x"}),
        "data.object.payments.data",
    ),
    "invoice-parent-details-metadata-bad": (
        stripe("invoice.paid", parent={"subscription_details": {"metadata": {"a": []}}}),
        "data.object.parent.subscription_details.metadata.a",
    ),
    "subscription-period-string": (
        stripe("customer.subscription.updated", current_period_end="soon"),
        "data.object.current_period_end",
    ),
    "subscription-cancel-string": (
        stripe("customer.subscription.updated", cancel_at_period_end="true"),
        "data.object.cancel_at_period_end",
    ),
    "subscription-items-quantity": (
        stripe(
            "customer.subscription.updated",
            items={"data": [{"price": {"unit_amount": 5}, "quantity": "2"}]},
        ),
        "data.object.items.data[0].quantity",
    ),
    "subscription-amount-overflows": (
        stripe(
            "customer.subscription.updated",
            items={"data": [{"price": {"unit_amount": 10**15}, "quantity": 10**15}]},
        ),
        "data.object.items.data",
    ),
}

TILLED_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "no-created_at": (without(tilled(), "created_at"), "created_at"),
    "created_at-null": (with_(tilled(), None, "created_at"), "created_at"),
    "created_at-words": (with_(tilled(), "yesterday", "created_at"), "created_at"),
    "created_at-list": (with_(tilled(), [2023], "created_at"), "created_at"),
    "created_at-before-1970": (with_(tilled(), "1969-12-31T00:00:00Z", "created_at"), "created_at"),
    "created_at-overflows": (
        with_(tilled(), "9999-12-31T23:59:59-14:00", "created_at"),
        "created_at",
    ),
    "created_at-huge-number": (with_(tilled(), 10**20, "created_at"), "created_at"),
    "no-id": (without(tilled(), "id"), "id"),
    "type-null": (with_(tilled(), None, "type"), "type"),
    "no-data": (without(tilled(), "data"), "data"),
    "data-list": (with_(tilled(), [1], "data"), "data"),
    "amount-string": (with_(tilled(), "100", "data", "amount"), "data.amount"),
    "amount-2^63": (with_(tilled(), BIG, "data", "amount"), "data.amount"),
    "customer_id-object-bad-id": (
        with_(tilled(), {"id": []}, "data", "customer_id"),
        "data.customer_id",
    ),
    "metadata-nested": (with_(tilled(), {"a": {"b": "c"}}, "data", "metadata"), "data.metadata.a"),
    "refund-payment-intent-number": (
        tilled("charge.refunded", payment_intent_id=3),
        "data.payment_intent_id",
    ),
    "subscription-price-float": (tilled("subscription.updated", price=49.5), "data.price"),
    "subscription-next-payment-words": (
        tilled("subscription.updated", next_payment_at="next month"),
        "data.next_payment_at",
    ),
    "nested-object-amount": (
        {**without(tilled(), "data"), "data": {"object": {"id": "pi", "amount": -1}}},
        "data.object.amount",
    ),
}

NOT_EVENTS: dict[str, bytes] = {
    "not-json": b"not json",
    "latin-1": '{"id": "évt"}'.encode("latin-1"),
    "utf-16": json.dumps({"id": "evt_1", "type": "x", "created": 1}).encode("utf-16"),
    "array": b"[]",
    "string": b'"evt"',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "huge-int": b'{"id": "evt_1", "type": "x", "created": 1' + b"0" * 5000 + b"}",
    "nan": b'{"id": "evt_1", "type": "x", "created": NaN}',
}


def _refused(processor: Processor, body: bytes) -> MalformedEvent:
    with pytest.raises(MalformedEvent) as refused:
        processor.parse(body)
    return refused.value


@pytest.mark.parametrize(("event", "field"), STRIPE_CASES.values(), ids=STRIPE_CASES.keys())
def test_stripe_malformed_event_names_the_field(event: dict[str, Any], field: str) -> None:
    error = _refused(STRIPE, json.dumps(event).encode())
    assert error.field == field
    assert str(error).startswith(f"{field}: ")


@pytest.mark.parametrize(("event", "field"), TILLED_CASES.values(), ids=TILLED_CASES.keys())
def test_tilled_malformed_event_names_the_field(event: dict[str, Any], field: str) -> None:
    error = _refused(TILLED, json.dumps(event).encode())
    assert error.field == field


@pytest.mark.parametrize("processor", [STRIPE, TILLED], ids=lambda p: p.name)
@pytest.mark.parametrize("body", NOT_EVENTS.values(), ids=NOT_EVENTS.keys())
def test_a_body_that_is_no_event_is_malformed(processor: Processor, body: bytes) -> None:
    error = _refused(processor, body)
    assert error.field in {"the body", "id", "type", "created", "created_at"}


MAKERS: dict[str, Callable[..., dict[str, Any]]] = {"stripe": stripe, "tilled": tilled}


@pytest.mark.parametrize("processor", [STRIPE, TILLED], ids=lambda p: p.name)
def test_fields_not_read_are_not_checked(processor: Processor) -> None:
    # An ignored type's object is never read; an unknown field never matters.
    ignored = MAKERS[processor.name]("account.updated", amount="lots", currency=7)
    assert processor.parse(json.dumps(ignored).encode()).kind is EventKind.IGNORED
    extra = MAKERS[processor.name](new_field={"any": ["thing"]}, amount=0)
    event = processor.parse(json.dumps(extra).encode())
    assert (event.kind, event.amount_minor) == (EventKind.PAYMENT_SUCCEEDED, 0)


@pytest.mark.parametrize("processor", [STRIPE, TILLED], ids=lambda p: p.name)
def test_nulls_and_blank_strings_read_as_absent(processor: Processor) -> None:
    event = MAKERS[processor.name](
        customer=None, customer_id="", currency=None, metadata=None, status=""
    )
    parsed = processor.parse(json.dumps(event).encode())
    assert (parsed.customer_id, parsed.currency, parsed.metadata, parsed.status) == (
        None,
        None,
        {},
        None,
    )


# --- Every field of real-looking events, replaced by every wrong kind of value ---------------

#: Values of every JSON kind, and the edges of the ranges the columns hold.
WRONG_VALUES: list[Any] = [None, "", "x", "\x00", -1, 0, 2**63, 1.5, True, [], {}, ["x"]]


def _samples() -> list[tuple[Processor, dict[str, Any]]]:
    def load(body: bytes) -> dict[str, Any]:
        return dict(json.loads(body))

    charge = {"id": "ch_1", "amount": 500, "amount_refunded": 200, "payment_intent": "pi_1"}
    intent = real.payment_intent(
        last_payment_error={"code": "card_declined", "message": "declined"},
        customer={"id": "cus_1", "object": "customer"},
    )
    new_invoice = real.invoice(
        parent={"subscription_details": {"metadata": {"a": "b"}, "subscription": "sub_N"}},
        payments={"data": [{"payment": {"payment_intent": "pi_N"}}]},
    )
    return [
        (STRIPE, load(real.stripe_event("payment_intent.payment_failed", intent))),
        (STRIPE, load(real.stripe_event("checkout.session.completed", {"id": "cs_1"}))),
        (STRIPE, load(real.stripe_event("charge.refunded", charge))),
        (STRIPE, load(real.stripe_event("invoice.paid", real.invoice()))),
        (STRIPE, load(real.stripe_event("invoice.paid", new_invoice))),
        (STRIPE, load(real.stripe_event("customer.subscription.updated", real.subscription()))),
        (
            TILLED,
            load(real.tilled_event("payment_intent.payment_failed", real.tilled_payment_intent())),
        ),
        (TILLED, load(real.tilled_event("charge.refunded", {**charge, "payment_intent_id": "p"}))),
        (TILLED, load(real.tilled_event("subscription.updated", real.tilled_subscription()))),
        (
            TILLED,
            load(
                real.tilled_event("subscription.canceled", real.tilled_subscription(), nested=True)
            ),
        ),
    ]


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path to a value inside ``value`` (objects and arrays walked)."""
    found: list[tuple[str | int, ...]] = []
    items: list[tuple[str | int, Any]] = (
        list(value.items())
        if isinstance(value, dict)
        else list(enumerate(value))
        if isinstance(value, list)
        else []
    )
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _replaced(event: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(event)
    target: Any = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


def _outcome(processor: Processor, body: bytes) -> NormalizedEvent | MalformedEvent:
    """The event read, or the one error reading it may raise (anything else fails the test)."""
    try:
        return processor.parse(body)
    except MalformedEvent as error:
        return error


def _fits_the_columns(event: NormalizedEvent) -> bool:
    """Whether every value read is one the billing columns hold."""
    for value in [*vars(event).values(), *event.metadata, *event.metadata.values()]:
        if isinstance(value, str) and ("\x00" in value or len(value) > 5000):
            return False
        if isinstance(value, int) and not isinstance(value, bool) and not 0 <= value <= 10**15:
            return False
    return True


def test_every_field_read_with_any_wrong_value_is_read_or_malformed() -> None:
    tried = refused = 0
    for processor, event in _samples():
        assert processor.parse(json.dumps(event).encode()).kind is not EventKind.IGNORED
        for path in _paths(event):
            for value in WRONG_VALUES:
                tried += 1
                outcome = _outcome(processor, json.dumps(_replaced(event, path, value)).encode())
                if isinstance(outcome, MalformedEvent):
                    refused += 1
                    assert outcome.field, (path, value)
                else:  # what is read is what the columns hold: nothing later fails on it
                    assert _fits_the_columns(outcome), (path, value)
    assert tried > 2000
    assert refused > tried // 3
