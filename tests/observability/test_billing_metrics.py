"""Webhook and subscription metrics after real deliveries, on every backend."""

from __future__ import annotations

import time
import uuid
from typing import Any

from tenantry.services import apikeys
from tests.api.conftest import BillingApi
from tests.observability.scrape import Scrape, scrape


def _admin(api: BillingApi) -> dict[str, str]:
    with api.platform.sessions.begin() as session:
        made = apikeys.create_key(
            session, name="prometheus", scope=apikeys.Scope.ADMIN, read_only=True, actor="cli:t"
        )
    return {"Authorization": f"Bearer {made.plaintext}"}


def _subscription_created(external_customer_id: str, subscription: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": "customer.subscription.created",
        "created": now,
        "data": {
            "object": {
                "id": subscription,
                "object": "subscription",
                "status": "active",
                "customer": f"cus_{subscription}",
                "metadata": {"external_customer_id": external_customer_id, "plan_code": "pro"},
                "current_period_start": now,
                "current_period_end": now + 2_592_000,
                "cancel_at_period_end": False,
                "items": {"data": []},
            }
        },
    }


def _counters(found: Scrape) -> dict[str, float]:
    event = "customer.subscription.created"
    return {
        "received": found.value(
            "tenantry_webhooks_received_total", app="acme", processor="stripe", event_type=event
        ),
        "bad_signature": found.value(
            "tenantry_webhooks_rejected_total", processor="stripe", reason="signature"
        ),
        "unknown_processor": found.value(
            "tenantry_webhooks_rejected_total", processor="<unknown>", reason="unknown_processor"
        ),
        "processed": found.value(
            "tenantry_webhooks_processed_total", processor="stripe", status="processed"
        ),
        "ignored": found.value(
            "tenantry_webhooks_processed_total", processor="stripe", status="ignored"
        ),
        "created": found.value("tenantry_subscriptions_created_total", app="acme", plan="pro"),
        "canceled": found.value("tenantry_subscriptions_canceled_total", app="acme", plan="pro"),
        "billing_queries": found.value("tenantry_db_query_duration_seconds_count", role="billing"),
    }


def test_webhooks_and_subscriptions_are_counted_and_the_backlog_read(
    billing_api: BillingApi,
) -> None:
    api = billing_api
    admin = _admin(api)
    before = _counters(scrape(api.client, admin))
    made = api.client.post(
        "/billing/customers", headers=api.acme, json={"external_customer_id": "cust-1"}
    )
    assert made.status_code == 201, made.text

    known = _subscription_created("cust-1", "sub_one")
    assert api.deliver("acme", known).status_code == 200
    assert api.deliver("acme", known).status_code == 200  # a duplicate: stored once
    assert api.deliver("acme", _subscription_created("nobody", "sub_two")).status_code == 200
    body, headers = api.signed(_subscription_created("cust-1", "sub_x"), secret="whsec_wrong")
    assert (
        api.client.post("/webhooks/stripe/acme", content=body, headers=headers).status_code == 401
    )
    unknown = api.client.post("/webhooks/paypal-but-made-up/acme", content=body, headers=headers)
    assert unknown.status_code == 404

    waiting = scrape(api.client, admin)
    assert waiting.value("tenantry_webhook_backlog") == 2
    assert 0 <= waiting.value("tenantry_webhook_backlog_oldest_age_seconds") < 120
    middle = _counters(waiting)
    assert middle["received"] - before["received"] == 2
    assert middle["bad_signature"] - before["bad_signature"] == 1
    assert middle["unknown_processor"] - before["unknown_processor"] == 1
    # The caller's text never becomes a label value.
    assert "paypal" not in waiting.text
    route = "/webhooks/{processor}/{app_id}"  # served before routing, labelled all the same
    assert waiting.value("tenantry_http_requests_total", route=route, status="401") >= 1
    assert waiting.value("tenantry_http_requests_total", route=route, status="200") >= 3

    assert api.process() == 2
    applied = scrape(api.client, admin)
    assert applied.value("tenantry_webhook_backlog") == 0
    assert applied.value("tenantry_webhook_backlog_oldest_age_seconds") == 0
    after = _counters(applied)
    assert after["processed"] - before["processed"] == 1
    assert after["ignored"] - before["ignored"] == 1  # no such customer
    assert after["created"] - before["created"] == 1  # the processor's subscription
    assert applied.value("tenantry_subscriptions", app="acme", plan="pro", status="active") == 1

    listed = api.client.get("/billing/subscriptions", headers=api.acme).json()
    canceled = api.client.post(
        f"/billing/subscriptions/{listed[0]['id']}/cancel",
        headers=api.acme,
        json={"at_period_end": False},
    )
    assert canceled.status_code == 200, canceled.text
    final = scrape(api.client, admin)
    assert _counters(final)["canceled"] - before["canceled"] == 1
    assert final.value("tenantry_subscriptions", app="acme", plan="pro", status="canceled") == 1
    assert final.value("tenantry_subscriptions", app="acme", plan="pro", status="active") == 0
    assert _counters(final)["billing_queries"] > before["billing_queries"]
    # Measured by each backend itself.
    assert final.value("tenantry_database_size_bytes", database="billing") > 0
    assert final.value("tenantry_database_size_bytes", database="master") > 0
    assert final.value("tenantry_collector_errors_total") == 0
