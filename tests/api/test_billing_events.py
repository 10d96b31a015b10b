"""Billing events end to end: signed deliveries over HTTP, applied, checked in billing rows.

Proves, on SQLite, PostgreSQL and MariaDB billing, that Stripe's ``invoice.paid`` pays the
invoice (status, amount paid and milestones, also in API versions whose webhooks carry no
payment intent); that a full ``charge.refunded`` marks the payment refunded while the invoice
stays paid (refunds are modelled on payments); that a refund applied before its payment ends
in exactly the state of the usual order, for Stripe and Tilled (whose charges may carry only
``amount_captured`` and ``payment_intent_id``); and that refunds delivered to another app,
or claiming another app, are ignored and leave this app's rows alone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from tenantry.db.billing.models import BillingPayment, BillingWebhook
from tenantry.services.billing import webhook_secrets
from tests.api.conftest import BillingApi

TILLED_SECRET = "tilled_" + "r3fund" * 4


def _invoice(
    api: BillingApi,
    number: str,
    amount: int,
    *,
    headers: dict[str, str] | None = None,
    milestones: list[int] | None = None,
) -> dict[str, Any]:
    headers = headers or api.acme
    customer = api.client.post(
        "/billing/customers", headers=headers, json={"external_customer_id": f"c-{number}"}
    )
    assert customer.status_code == 201, customer.text
    body: dict[str, Any] = {
        "customer_id": customer.json()["id"],
        "invoice_number": number,
        "currency": "USD",
        "finalize": True,
    }
    if milestones:
        body["milestones"] = [
            {"name": f"part {i}", "amount_minor": m} for i, m in enumerate(milestones)
        ]
    else:
        body["amount_minor"] = amount
    made = api.client.post("/billing/invoices", headers=headers, json=body)
    assert made.status_code == 201, made.text
    return dict(made.json())


def _get_invoice(api: BillingApi, invoice: dict[str, Any]) -> dict[str, Any]:
    got = api.client.get(f"/billing/invoices/{invoice['id']}", headers=api.acme)
    assert got.status_code == 200, got.text
    return dict(got.json())


def _stripe(event_type: str, obj: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "created": created or int(time.time()),
        "data": {"object": obj},
    }


def _paid(pi: str, amount: int, metadata: dict[str, str], *, created: int | None = None) -> Any:
    return _stripe(
        "payment_intent.succeeded",
        {
            "id": pi,
            "object": "payment_intent",
            "amount": amount,
            "amount_received": amount,
            "currency": "usd",
            "status": "succeeded",
            "latest_charge": f"ch_{pi[3:]}",
            "metadata": metadata,
        },
        created=created,
    )


def _refunded(
    pi: str, amount: int, refunded: int, metadata: dict[str, str], *, created: int | None = None
) -> Any:
    return _stripe(
        "charge.refunded",
        {
            "id": f"ch_{pi[3:]}",
            "object": "charge",
            "payment_intent": pi,
            "amount": amount,
            "amount_refunded": refunded,
            "currency": "usd",
            "status": "succeeded",
            "refunded": refunded >= amount,
            "metadata": metadata,
        },
        created=created,
    )


def _payments(api: BillingApi) -> dict[str, tuple[str, str, int, int]]:
    """Every payment by processor id: app, status, amount, amount refunded."""
    with api.platform.billing_sessions() as session:
        rows = session.scalars(select(BillingPayment)).all()
    return {
        p.processor_payment_id: (p.app_id, p.status, p.amount_minor, p.amount_refunded_minor)
        for p in rows
    }


def _outcomes(api: BillingApi) -> dict[str, tuple[str, str]]:
    """Every stored event by processor id: status and result."""
    with api.platform.billing_sessions() as session:
        rows = session.scalars(select(BillingWebhook)).all()
    return {r.event_id: (r.status, r.result or r.last_error or "") for r in rows}


def _drain(api: BillingApi) -> None:
    deadline = time.monotonic() + 30
    while api.process():
        assert time.monotonic() < deadline


def _deliver_all(api: BillingApi, app: str, *events: dict[str, Any]) -> None:
    for event in events:
        answer = api.deliver(app, event)
        assert answer.status_code == 200, answer.text


# --------------------------------------------------------------------------- invoice.paid


def test_invoice_paid_without_a_payment_intent_pays_the_invoice(billing_api: BillingApi) -> None:
    api = billing_api
    invoice = _invoice(api, "INV-P1", 5000)
    # Stripe API versions from 2025-03-31 send invoice.paid with no payment_intent.
    event = _stripe(
        "invoice.paid",
        {
            "id": "in_p1",
            "object": "invoice",
            "status": "paid",
            "amount_paid": 5000,
            "currency": "usd",
            "metadata": {"invoice_id": invoice["id"], "app_id": "acme"},
        },
    )
    _deliver_all(api, "acme", event)
    _drain(api)
    assert _outcomes(api)[event["id"]][0] == "processed"
    paid = _get_invoice(api, invoice)
    assert paid["status"] == "paid"
    assert paid["paid_at"] is not None
    assert paid["amount_paid_minor"] == 5000


def test_invoice_paid_settles_every_milestone(billing_api: BillingApi) -> None:
    api = billing_api
    invoice = _invoice(api, "INV-P2", 0, milestones=[3000, 7000])
    event = _stripe(
        "invoice.paid",
        {
            "id": "in_p2",
            "object": "invoice",
            "status": "paid",
            "amount_paid": 10_000,
            "currency": "usd",
            "metadata": {"invoice_id": invoice["id"]},
        },
    )
    _deliver_all(api, "acme", event)
    _drain(api)
    paid = _get_invoice(api, invoice)
    assert paid["status"] == "paid"
    assert paid["amount_paid_minor"] == 10_000
    assert [m["status"] for m in paid["milestones"]] == ["paid", "paid"]


def test_invoice_paid_with_its_payment_intent_records_the_payment(
    billing_api: BillingApi,
) -> None:
    api = billing_api
    invoice = _invoice(api, "INV-P3", 4200)
    event = _stripe(
        "invoice.paid",
        {
            "id": "in_p3",
            "object": "invoice",
            "status": "paid",
            "amount_paid": 4200,
            "currency": "usd",
            "payment_intent": "pi_p3",
            "metadata": {"invoice_id": invoice["id"]},
        },
    )
    _deliver_all(api, "acme", event)
    _drain(api)
    paid = _get_invoice(api, invoice)
    assert (paid["status"], paid["amount_paid_minor"]) == ("paid", 4200)
    assert _payments(api) == {"pi_p3": ("acme", "succeeded", 4200, 0)}


# --------------------------------------------------------------------------- refunds


def test_a_full_refund_marks_the_payment_refunded(billing_api: BillingApi) -> None:
    api = billing_api
    invoice = _invoice(api, "INV-R1", 2500)
    meta = {"invoice_id": invoice["id"], "app_id": "acme"}
    t0 = int(time.time()) - 60
    _deliver_all(api, "acme", _paid("pi_r1", 2500, meta, created=t0))
    _drain(api)
    assert _payments(api) == {"pi_r1": ("acme", "succeeded", 2500, 0)}
    _deliver_all(api, "acme", _refunded("pi_r1", 2500, 1000, meta, created=t0 + 10))
    _drain(api)
    assert _payments(api) == {"pi_r1": ("acme", "partially_refunded", 2500, 1000)}
    full = _refunded("pi_r1", 2500, 2500, meta, created=t0 + 20)
    _deliver_all(api, "acme", full)
    _drain(api)
    assert _payments(api) == {"pi_r1": ("acme", "refunded", 2500, 2500)}
    assert "refunded 2500" in _outcomes(api)[full["id"]][1]
    # The invoice was paid and stays so: the refund is recorded on its payment.
    after = _get_invoice(api, invoice)
    assert (after["status"], after["amount_paid_minor"]) == ("paid", 2500)
    # A late, older partial refund never lowers what was refunded.
    _deliver_all(api, "acme", _refunded("pi_r1", 2500, 1000, meta, created=t0 + 5))
    _drain(api)
    assert _payments(api) == {"pi_r1": ("acme", "refunded", 2500, 2500)}


def _tilled_deliver(api: BillingApi, event: dict[str, Any]) -> None:
    body = json.dumps(event).encode()
    t = str(int(time.time() * 1000))  # Tilled signs milliseconds
    mac = hmac.new(TILLED_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    answer = api.client.post(
        "/webhooks/tilled/acme",
        content=body,
        headers={"tilled-signature": f"t={t},v1={mac}", "content-type": "application/json"},
    )
    assert answer.status_code == 200, answer.text


def _tilled_pair(pi: str, amount: int, meta: dict[str, str]) -> tuple[Any, Any]:
    """A Tilled payment and its full refund; the charge names only what it captured."""
    now = time.time()
    paid = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 30)),
        "data": {
            "id": pi,
            "amount": amount,
            "amount_received": amount,
            "currency": "usd",
            "status": "succeeded",
            "metadata": meta,
        },
    }
    refund = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "charge.refunded",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "data": {
            "id": f"ch_{pi}",
            "payment_intent_id": pi,
            "amount_captured": amount,
            "amount_refunded": amount,
            "currency": "usd",
            "status": "succeeded",
            "metadata": meta,
        },
    }
    return paid, refund


@pytest.mark.parametrize("processor", ["stripe", "tilled"])
def test_a_refund_before_its_payment_ends_as_in_the_usual_order(
    billing_api: BillingApi, processor: str
) -> None:
    api = billing_api
    if processor == "tilled":
        with api.platform.billing_sessions.begin() as session:
            webhook_secrets.add_secret(
                session, api.platform.box, "acme", "tilled", TILLED_SECRET, actor="cli:test"
            )
    results = {}
    for order in ("usual", "refund-first", "one-batch"):
        invoice = _invoice(api, f"INV-{order}", 3100)
        pi = f"pi_{order.replace('-', '_')}_{processor}"
        meta = {"invoice_id": invoice["id"], "app_id": "acme"}
        if processor == "stripe":
            t0 = int(time.time()) - 60
            pay, refund = (
                _paid(pi, 3100, meta, created=t0),
                _refunded(pi, 3100, 3100, meta, created=t0 + 30),
            )
        else:
            pay, refund = _tilled_pair(pi, 3100, meta)

        def send(event: dict[str, Any]) -> None:
            if processor == "stripe":
                _deliver_all(api, "acme", event)
            else:
                _tilled_deliver(api, event)

        if order == "usual":
            send(pay)
            _drain(api)
            send(refund)
            _drain(api)
        elif order == "refund-first":
            send(refund)
            _drain(api)
            # Not lost while its payment is missing: recorded, and refunded.
            assert _payments(api)[pi][1:] == ("refunded", 3100, 3100)
            send(pay)
            _drain(api)
        else:  # received refund first, applied in one batch
            send(refund)
            send(pay)
            _drain(api)
        outcomes = _outcomes(api)
        assert outcomes[pay["id"]][0] == "processed", outcomes[pay["id"]]
        assert outcomes[refund["id"]][0] == "processed", outcomes[refund["id"]]
        got = _get_invoice(api, invoice)
        results[order] = (_payments(api)[pi], got["status"], got["amount_paid_minor"])
    expected = (("acme", "refunded", 3100, 3100), "paid", 3100)
    assert results == {"usual": expected, "refund-first": expected, "one-batch": expected}
    with api.platform.billing_sessions() as session:
        processors = set(session.scalars(select(BillingPayment.processor)))
    assert processors == {processor}


def test_a_refund_of_another_app_leaves_this_apps_rows_alone(billing_api: BillingApi) -> None:
    api = billing_api
    invoice = _invoice(api, "INV-X1", 2000)
    meta = {"invoice_id": invoice["id"], "app_id": "acme"}
    _deliver_all(api, "acme", _paid("pi_x1", 2000, meta))
    _drain(api)
    before = _payments(api)
    assert before == {"pi_x1": ("acme", "succeeded", 2000, 0)}

    # The same processor account delivers the refund to globex's endpoint (no app named).
    to_globex = _refunded("pi_x1", 2000, 2000, {})
    _deliver_all(api, "globex", to_globex)
    # A refund claiming globex delivered to acme.
    claims_globex = _refunded("pi_x1", 2000, 2000, {"app_id": "globex"})
    _deliver_all(api, "acme", claims_globex)
    _drain(api)
    outcomes = _outcomes(api)
    assert outcomes[to_globex["id"]][0] == "ignored"
    assert "another app" in outcomes[to_globex["id"]][1]
    assert outcomes[claims_globex["id"]][0] == "ignored"
    assert "globex" in outcomes[claims_globex["id"]][1]
    assert _payments(api) == before
    assert _get_invoice(api, invoice)["status"] == "paid"


def test_another_apps_refund_before_the_payment_does_not_take_it(
    billing_api: BillingApi,
) -> None:
    api = billing_api
    invoice = _invoice(api, "INV-X2", 1800)
    # globex's endpoint gets a refund about acme's invoice before acme saw the payment.
    early = _refunded("pi_x2", 1800, 1800, {"invoice_id": invoice["id"]})
    _deliver_all(api, "globex", early)
    _drain(api)
    assert _outcomes(api)[early["id"]][0] == "ignored"
    assert _payments(api) == {}
    _deliver_all(api, "acme", _paid("pi_x2", 1800, {"invoice_id": invoice["id"]}))
    _drain(api)
    assert _payments(api) == {"pi_x2": ("acme", "succeeded", 1800, 0)}
    paid = _get_invoice(api, invoice)
    assert (paid["status"], paid["amount_paid_minor"]) == ("paid", 1800)
