"""The webhook endpoint: events are per app, and bodies the adapter cannot read are refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from sqlalchemy import func, select

from tenantry.db.billing.models import BillingWebhook
from tenantry.services.billing import webhook_secrets
from tests.api.conftest import BillingApi
from tests.billing.test_malformed_events import NOT_EVENTS, STRIPE_CASES, TILLED_CASES, tilled
from tests.stripe_events import stripe_headers

TILLED_SECRET = "tilled_" + "s3cr3t" * 4


def _invoice(api: BillingApi, headers: dict[str, str], number: str) -> dict[str, Any]:
    customer = api.client.post(
        "/billing/customers", headers=headers, json={"external_customer_id": f"c-{number}"}
    )
    assert customer.status_code == 201, customer.text
    made = api.client.post(
        "/billing/invoices",
        headers=headers,
        json={
            "customer_id": customer.json()["id"],
            "invoice_number": number,
            "currency": "USD",
            "amount_minor": 2500,
            "finalize": True,
        },
    )
    assert made.status_code == 201, made.text
    return dict(made.json())


def _paying(event_id: str, pi: str, invoice: dict[str, Any], app: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": pi,
                "object": "payment_intent",
                "amount": 2500,
                "amount_received": 2500,
                "currency": "usd",
                "status": "succeeded",
                "metadata": {"invoice_id": invoice["id"], "app_id": app},
            }
        },
    }


def test_the_same_event_id_delivered_to_two_apps_is_applied_for_each(
    billing_api: BillingApi,
) -> None:
    api = billing_api
    acme_invoice = _invoice(api, api.acme, "A-1")
    globex_invoice = _invoice(api, api.globex, "G-1")
    shared = "evt_shared_between_apps"
    to_acme = _paying(shared, "pi_acme", acme_invoice, "acme")
    to_globex = _paying(shared, "pi_globex", globex_invoice, "globex")

    first = api.deliver("acme", to_acme)
    second = api.deliver("globex", to_globex)
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["duplicate"] is False
    assert second.json()["duplicate"] is False
    assert second.json()["id"] != first.json()["id"]
    # A redelivery to the same app is still a duplicate of that app's row.
    again = api.deliver("acme", to_acme)
    assert again.json() == {**first.json(), "duplicate": True}
    again_globex = api.deliver("globex", to_globex)
    assert again_globex.json() == {**second.json(), "duplicate": True}

    while api.process():
        pass
    for headers, invoice in ((api.acme, acme_invoice), (api.globex, globex_invoice)):
        paid = api.client.get(f"/billing/invoices/{invoice['id']}", headers=headers).json()
        assert paid["status"] == "paid"
        assert paid["amount_paid_minor"] == 2500
    with api.platform.billing_sessions() as session:
        rows = session.execute(
            select(BillingWebhook.app_id, BillingWebhook.status).where(
                BillingWebhook.event_id == shared
            )
        ).all()
    assert sorted(rows) == [("acme", "processed"), ("globex", "processed")]
    # Each app finds its own event by the processor's id.
    for headers, stored in ((api.acme, first), (api.globex, second)):
        replayed = api.client.post(f"/billing/events/{shared}/replay", headers=headers)
        assert replayed.status_code == 200, replayed.text
        assert replayed.json()["id"] == stored.json()["id"]


def test_one_body_delivered_to_two_apps_is_stored_for_each(billing_api: BillingApi) -> None:
    api = billing_api
    invoice = _invoice(api, api.acme, "A-2")
    event = _paying("evt_one_account_two_endpoints", "pi_one", invoice, "acme")
    answers = [api.deliver(app, event).json() for app in ("acme", "globex", "acme", "globex")]
    assert [a["duplicate"] for a in answers] == [False, False, True, True]
    assert answers[0]["id"] == answers[2]["id"] != answers[1]["id"] == answers[3]["id"]
    while api.process():
        pass
    with api.platform.billing_sessions() as session:
        statuses = {
            app: status
            for app, status in session.execute(select(BillingWebhook.app_id, BillingWebhook.status))
        }
    # acme's invoice is paid; globex is told the event is about another app's objects.
    assert statuses == {"acme": "processed", "globex": "ignored"}
    paid = api.client.get(f"/billing/invoices/{invoice['id']}", headers=api.acme).json()
    assert paid["status"] == "paid"


def _tilled_headers(body: bytes) -> dict[str, str]:
    t = int(time.time() * 1000)  # Tilled signs milliseconds
    mac = hmac.new(TILLED_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return {"tilled-signature": f"t={t},v1={mac}", "content-type": "application/json"}


def _stored(api: BillingApi) -> int:
    with api.platform.billing_sessions() as session:
        return int(session.scalar(select(func.count()).select_from(BillingWebhook)) or 0)


def test_signed_events_the_adapter_cannot_read_are_refused_with_400(
    billing_api: BillingApi,
) -> None:
    api = billing_api
    with api.platform.billing_sessions.begin() as session:
        webhook_secrets.add_secret(
            session, api.platform.box, "acme", "tilled", TILLED_SECRET, actor="cli:test"
        )
    sent: list[tuple[str, str, bytes, str | None]] = []
    for processor, cases in (("stripe", STRIPE_CASES), ("tilled", TILLED_CASES)):
        sent.extend((processor, n, json.dumps(e).encode(), f) for n, (e, f) in cases.items())
    sent.extend(("stripe", name, body, None) for name, body in NOT_EVENTS.items())
    for processor, name, body, field in sent:
        headers = (
            stripe_headers(body, api.secret) if processor == "stripe" else _tilled_headers(body)
        )
        answer = api.client.post(f"/webhooks/{processor}/acme", content=body, headers=headers)
        assert answer.status_code == 400, (name, answer.text)
        error = answer.json()["error"]
        assert error["type"] == "MalformedPayload", name
        assert f"not a {processor} event" in error["message"], name
        if field is not None:
            assert f": {field}: " in error["message"], (name, error["message"])
        assert error["hint"], name
    assert _stored(api) == 0
    # A well-formed Tilled event still goes through.
    good = json.dumps(tilled()).encode()
    accepted = api.client.post("/webhooks/tilled/acme", content=good, headers=_tilled_headers(good))
    assert accepted.status_code == 200, accepted.text
    assert _stored(api) == 1


def test_an_unsigned_malformed_body_is_refused_for_its_signature_first(
    billing_api: BillingApi,
) -> None:
    answer = billing_api.client.post(
        "/webhooks/stripe/acme", content=b"not json", headers={"Stripe-Signature": "t=1,v1=00"}
    )
    assert answer.status_code == 401
    assert _stored(billing_api) == 0


def test_a_malformed_path_is_refused_before_any_query(billing_api: BillingApi) -> None:
    for path in ("/webhooks/stripe/a%00b", "/webhooks/stripe/" + "a" * 300, "/webhooks/stripe/A!"):
        answer = billing_api.client.post(
            path, content=b"{}", headers={"Stripe-Signature": "t=1,v1=00"}
        )
        assert answer.status_code == 422, (path, answer.text)
        assert "app" in answer.json()["error"]["message"]
    unknown = billing_api.client.post("/webhooks/st%00ripe/acme", content=b"{}")
    assert unknown.status_code == 404
