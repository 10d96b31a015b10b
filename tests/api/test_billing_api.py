"""The billing API and webhooks on SQLite, PostgreSQL and MariaDB billing databases."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from sqlalchemy import func, select

from tenantry.db.billing.models import BillingAuditLog, BillingPayment, BillingWebhook
from tests.api.conftest import BillingApi


def _customer(api: BillingApi, external: str = "42", **extra: Any) -> dict[str, Any]:
    made = api.client.post(
        "/billing/customers",
        headers=api.acme,
        json={
            "external_customer_id": external,
            "email": "ap@acme.example",
            "name": "Acme",
            **extra,
        },
    )
    assert made.status_code in (200, 201), made.text
    return dict(made.json())


def _pi_event(
    pi: str,
    *,
    amount: int,
    metadata: dict[str, str],
    kind: str = "succeeded",
    created: int | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": pi,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if kind == "succeeded" else 0,
        "currency": "usd",
        "status": kind,
        "metadata": metadata,
        "customer": None,
    }
    if kind == "payment_failed":
        obj["status"] = "requires_payment_method"
        obj["last_payment_error"] = {"code": "card_declined", "message": "Your card was declined."}
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": f"payment_intent.{kind}",
        "created": created or int(time.time()),
        "data": {"object": obj},
    }


def test_customers_are_created_once_and_scoped_to_their_app(billing_api: BillingApi) -> None:
    api = billing_api
    first = _customer(api)
    again = api.client.post(
        "/billing/customers",
        headers=api.acme,
        json={"external_customer_id": "42", "email": "other@acme.example"},
    )
    assert again.status_code == 200
    assert again.json()["id"] == first["id"]
    by_ext = api.client.get("/billing/customers/by-external-id/42", headers=api.acme)
    assert by_ext.json()["id"] == first["id"]
    assert (
        api.client.get(f"/billing/customers/{first['id']}", headers=api.globex).status_code == 404
    )
    same_ext_other_app = api.client.post(
        "/billing/customers", headers=api.globex, json={"external_customer_id": "42"}
    )
    assert same_ext_other_app.status_code == 201
    assert same_ext_other_app.json()["id"] != first["id"]
    for n in range(5):
        _customer(api, f"c{n}")
    page = api.client.get("/billing/customers?limit=2&offset=2", headers=api.acme).json()
    assert page["total"] == 6
    assert len(page["items"]) == 2
    assert api.client.get("/billing/customers", headers=api.globex).json()["total"] == 1


def test_bad_input_is_refused_at_the_edge(billing_api: BillingApi) -> None:
    api = billing_api
    card = api.client.post(
        "/billing/customers",
        headers=api.acme,
        json={"external_customer_id": "x1", "metadata": {"note": "card 4242 4242 4242 4242"}},
    )
    assert card.status_code == 422
    assert "card number" in card.json()["error"]["message"]
    assert (
        api.client.post(
            "/billing/customers",
            headers=api.acme,
            json={"external_customer_id": "x2", "email": "not-an-email"},
        ).status_code
        == 422
    )
    customer = _customer(api)
    bad_currency = api.client.post(
        "/billing/invoices",
        headers=api.acme,
        json={
            "customer_id": customer["id"],
            "invoice_number": "INV-1",
            "currency": "XYZ",
            "amount_minor": 100,
        },
    )
    assert bad_currency.status_code == 422
    assert "currency" in bad_currency.json()["error"]["message"]
    floaty = api.client.post(
        "/billing/invoices",
        headers=api.acme,
        json={
            "customer_id": customer["id"],
            "invoice_number": "INV-2",
            "currency": "USD",
            "amount_minor": 10.5,
        },
    )
    assert floaty.status_code == 422
    no_key = api.client.get("/billing/customers")
    assert no_key.status_code == 401


def test_erase_keeps_the_books(billing_api: BillingApi) -> None:
    api = billing_api
    customer = _customer(api, metadata={"vat": "DE123"})
    invoice = api.client.post(
        "/billing/invoices",
        headers=api.acme,
        json={
            "customer_id": customer["id"],
            "invoice_number": "INV-9",
            "currency": "EUR",
            "amount_minor": 5000,
            "finalize": True,
        },
    ).json()
    erased = api.client.post(f"/billing/customers/{customer['id']}/erase", headers=api.acme)
    assert erased.status_code == 200
    body = erased.json()
    assert body["email"] is None
    assert body["name"] is None
    assert body["metadata"] == {}
    assert body["erased_at"] is not None
    kept = api.client.get(f"/billing/invoices/{invoice['id']}", headers=api.acme).json()
    assert kept["amount_minor"] == 5000
    with api.platform.billing_sessions() as session:
        entry = session.scalar(
            select(BillingAuditLog).where(BillingAuditLog.action == "customer.erase")
        )
        assert entry is not None
        assert entry.target_id == customer["id"]
        assert "ap@acme.example" not in str(entry.details)


def test_subscription_lifecycle_follows_the_table(billing_api: BillingApi) -> None:
    api = billing_api
    customer = _customer(api)
    plan = api.client.post(
        "/billing/plans",
        headers=api.acme,
        json={
            "code": "pro",
            "name": "Pro",
            "amount_minor": 2900,
            "currency": "usd",
            "trial_days": 14,
        },
    )
    assert plan.status_code == 201
    assert plan.json()["currency"] == "USD"
    sub = api.client.post(
        "/billing/subscriptions",
        headers=api.acme,
        json={"customer_id": customer["id"], "plan_code": "pro", "quantity": 2},
    ).json()
    assert sub["status"] == "trialing"
    assert sub["amount_minor"] == 5800
    sid = sub["id"]
    moved = api.client.post(
        f"/billing/subscriptions/{sid}/transition", headers=api.acme, json={"status": "active"}
    )
    assert moved.json()["status"] == "active"
    back = api.client.post(
        f"/billing/subscriptions/{sid}/transition", headers=api.acme, json={"status": "incomplete"}
    )
    assert back.status_code == 409
    assert "cannot become incomplete" in back.json()["error"]["message"]
    later = api.client.post(
        f"/billing/subscriptions/{sid}/cancel", headers=api.acme, json={"at_period_end": True}
    ).json()
    assert later["status"] == "active"
    assert later["cancel_at_period_end"] is True
    now = api.client.post(
        f"/billing/subscriptions/{sid}/cancel", headers=api.acme, json={"at_period_end": False}
    ).json()
    assert now["status"] == "canceled"
    revive = api.client.post(
        f"/billing/subscriptions/{sid}/transition", headers=api.acme, json={"status": "active"}
    )
    assert revive.status_code == 409
    assert api.client.get(f"/billing/subscriptions/{sid}", headers=api.globex).status_code == 404


def test_milestone_payments_settle_the_invoice_and_nothing_regresses(
    billing_api: BillingApi,
) -> None:
    api = billing_api
    customer = _customer(api)
    mismatch = api.client.post(
        "/billing/invoices",
        headers=api.acme,
        json={
            "customer_id": customer["id"],
            "invoice_number": "INV-X",
            "currency": "USD",
            "amount_minor": 999,
            "milestones": [{"name": "a", "amount_minor": 100}],
        },
    )
    assert mismatch.status_code == 422
    invoice = api.client.post(
        "/billing/invoices",
        headers=api.acme,
        json={
            "customer_id": customer["id"],
            "invoice_number": "INV-2026-001",
            "currency": "USD",
            "finalize": True,
            "milestones": [
                {"name": "Deposit", "amount_minor": 50_000},
                {"name": "Delivery", "amount_minor": 100_000},
            ],
        },
    ).json()
    assert invoice["amount_minor"] == 150_000
    deposit, delivery = invoice["milestones"]
    meta = {"invoice_id": invoice["id"], "app_id": "acme"}
    t0 = int(time.time()) - 100
    assert (
        api.deliver(
            "acme",
            _pi_event(
                "pi_dep",
                amount=50_000,
                created=t0,
                metadata={**meta, "milestone_id": deposit["id"]},
            ),
        ).status_code
        == 200
    )
    api.process()
    half = api.client.get(f"/billing/invoices/{invoice['id']}", headers=api.acme).json()
    assert half["status"] == "open"
    assert [m["status"] for m in half["milestones"]] == ["paid", "pending"]
    assert half["amount_paid_minor"] == 50_000
    api.deliver(
        "acme",
        _pi_event(
            "pi_del",
            amount=100_000,
            created=t0 + 10,
            metadata={**meta, "milestone_id": delivery["id"]},
        ),
    )
    api.process()
    paid = api.client.get(f"/billing/invoices/{invoice['id']}", headers=api.acme).json()
    assert paid["status"] == "paid"
    assert paid["amount_paid_minor"] == 150_000
    # A late failure about the deposit's payment intent changes nothing.
    api.deliver(
        "acme",
        _pi_event(
            "pi_dep",
            amount=50_000,
            kind="payment_failed",
            created=t0 - 50,
            metadata={**meta, "milestone_id": deposit["id"]},
        ),
    )
    api.process()
    still = api.client.get(f"/billing/invoices/{invoice['id']}", headers=api.acme).json()
    assert still["status"] == "paid"
    with api.platform.billing_sessions() as session:
        statuses = dict(
            session.execute(
                select(BillingPayment.processor_payment_id, BillingPayment.status)
            ).all()
        )
    assert statuses == {"pi_dep": "succeeded", "pi_del": "succeeded"}
    void = api.client.post(
        f"/billing/invoices/{invoice['id']}/status", headers=api.acme, json={"status": "void"}
    )
    assert void.status_code == 409


def test_webhook_signatures_duplicates_and_other_apps(billing_api: BillingApi) -> None:
    api = billing_api
    event = _pi_event("pi_1", amount=1000, metadata={})
    body, headers = api.signed(event)
    first = api.client.post("/webhooks/stripe/acme", content=body, headers=headers)
    assert first.status_code == 200
    assert first.json()["duplicate"] is False
    again = api.client.post("/webhooks/stripe/acme", content=body, headers=headers)
    assert again.status_code == 200
    assert again.json()["duplicate"] is True
    _, stale = api.signed(event, at=int(time.time()) - 400)
    assert api.client.post("/webhooks/stripe/acme", content=body, headers=stale).status_code == 401
    _, wrong = api.signed(event, secret="whsec_wrong_secret")
    refused = api.client.post("/webhooks/stripe/acme", content=body, headers=wrong)
    assert refused.status_code == 401
    assert "signature" in refused.json()["error"]["message"]
    assert (
        api.client.post("/webhooks/stripe/nobody", content=body, headers=headers).status_code == 422
    )
    assert (
        api.client.post("/webhooks/paypal/acme", content=body, headers=headers).status_code == 404
    )
    foreign = _pi_event("pi_2", amount=500, metadata={"app_id": "globex"})
    assert api.deliver("acme", foreign).status_code == 200
    api.process()
    with api.platform.billing_sessions() as session:
        rows = {r.event_id: r for r in session.scalars(select(BillingWebhook))}
        payments = session.scalars(select(BillingPayment.processor_payment_id)).all()
    assert rows[event["id"]].status == "processed"
    assert rows[foreign["id"]].status == "ignored"
    assert "globex" in (rows[foreign["id"]].result or "")
    assert payments == ["pi_1"]
    listed = api.client.get("/billing/events", headers=api.acme).json()
    assert {e["event_id"] for e in listed} == {event["id"], foreign["id"]}
    assert api.client.get("/billing/events", headers=api.globex).json() == []


def test_an_oversized_webhook_body_is_refused_and_not_stored(billing_api: BillingApi) -> None:
    api = billing_api
    event = _pi_event("pi_big", amount=1000, metadata={"note": "x" * (1024 * 1024)})
    body, headers = api.signed(event)
    refused = api.client.post("/webhooks/stripe/acme", content=body, headers=headers)
    assert refused.status_code == 413
    assert "larger than" in refused.json()["error"]["message"]
    with api.platform.billing_sessions() as session:
        assert session.scalars(select(BillingWebhook.event_id)).all() == []


def test_concurrent_duplicate_deliveries_make_one_payment(billing_api: BillingApi) -> None:
    api = billing_api
    event = _pi_event("pi_storm", amount=4200, metadata={})
    body, headers = api.signed(event)
    codes: list[int] = []

    def send() -> None:
        for _ in range(5):
            codes.append(
                api.client.post("/webhooks/stripe/acme", content=body, headers=headers).status_code
            )

    threads = [threading.Thread(target=send) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == [200] * 40
    checkout = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "checkout.session.completed",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": "cs_storm",
                "object": "checkout.session",
                "payment_intent": "pi_storm",
                "amount_total": 4200,
                "currency": "usd",
                "payment_status": "paid",
                "metadata": {},
            }
        },
    }
    api.deliver("acme", checkout)
    while api.process():
        pass
    with api.platform.billing_sessions() as session:
        assert session.scalar(select(func.count()).select_from(BillingWebhook)) == 2
        payments = session.scalars(select(BillingPayment)).all()
    assert len(payments) == 1
    assert payments[0].processor_checkout_session_id == "cs_storm"
    assert payments[0].amount_minor == 4200


def test_idempotency_keys_replay_the_first_response(billing_api: BillingApi) -> None:
    api = billing_api
    key = {**api.acme, "Idempotency-Key": "create-cust-1"}
    body = {"external_customer_id": "idem-1", "email": "i@acme.example"}
    first = api.client.post("/billing/customers", headers=key, json=body)
    assert first.status_code == 201
    again = api.client.post("/billing/customers", headers=key, json=body)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    other_body = api.client.post(
        "/billing/customers", headers=key, json={**body, "email": "x@acme.example"}
    )
    assert other_body.status_code == 409
    other_app = api.client.post(
        "/billing/customers", headers={**api.globex, "Idempotency-Key": "create-cust-1"}, json=body
    )
    assert other_app.status_code == 201
    assert other_app.json()["app_id"] == "globex"
    failing = {**api.acme, "Idempotency-Key": "bad-1"}
    bad = api.client.post(
        "/billing/customers", headers=failing, json={"external_customer_id": "!!"}
    )
    assert bad.status_code == 422
    replayed_error = api.client.post(
        "/billing/customers", headers=failing, json={"external_customer_id": "!!"}
    )
    assert replayed_error.status_code == 422
    assert replayed_error.headers.get("Idempotent-Replayed") == "true"
