"""Webhook events replayed over HTTP, and one backlog applied by two real worker processes.

Proves, on SQLite, PostgreSQL and MariaDB billing, that ``POST /billing/events/{id}/replay``
queues an event again and the next processing re-applies it (an event ignored because its
customer did not exist yet creates the subscription once the customer does; a second replay
changes nothing); that replaying another app's event - by processor id, tenantry id or id
prefix - is a 404 worded exactly as for an id that does not exist, and leaves the event
alone. (Backlogs applied by real worker processes: ``test_webhook_workers.py``.)
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select

from tenantry.db.billing.models import (
    BillingAuditLog,
    BillingSubscription,
    BillingWebhook,
)
from tests.api.conftest import BillingApi
from tests.stripe_events import subscription_created


def _subscription_event(external_customer_id: str) -> dict[str, Any]:
    return subscription_created(
        external_customer_id, subscription="sub_replayed", customer="cus_replayed"
    )


def _event(api: BillingApi, event_id: str) -> BillingWebhook:
    with api.platform.billing_sessions() as session:
        row = session.scalar(select(BillingWebhook).where(BillingWebhook.event_id == event_id))
    assert row is not None
    return row


def _subscriptions(api: BillingApi) -> list[tuple[str, str]]:
    with api.platform.billing_sessions() as session:
        rows = session.execute(select(BillingSubscription.app_id, BillingSubscription.status)).all()
    return [(r[0], r[1]) for r in rows]


def test_replay_over_http_reapplies_the_event(billing_api: BillingApi) -> None:
    api = billing_api
    event = _subscription_event("cust-late")
    assert api.deliver("acme", event).status_code == 200
    api.process()
    early = _event(api, event["id"])
    # The customer the event is about is not in billing yet: nothing to do, for now.
    assert early.status == "ignored"
    assert "no customer" in (early.result or "")
    assert _subscriptions(api) == []

    made = api.client.post(
        "/billing/customers", headers=api.acme, json={"external_customer_id": "cust-late"}
    )
    assert made.status_code == 201, made.text
    replayed = api.client.post(f"/billing/events/{event['id']}/replay", headers=api.acme)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["status"] == "received"
    assert replayed.json()["id"] == str(early.id)
    assert api.process() == 1
    applied = _event(api, event["id"])
    assert applied.status == "processed"
    assert applied.attempts == 2
    assert _subscriptions(api) == [("acme", "active")]
    listed = api.client.get("/billing/subscriptions", headers=api.acme).json()
    assert [s["customer_id"] for s in listed] == [made.json()["id"]]

    # Replayed again (by tenantry id this time): applied again, nothing doubles.
    again = api.client.post(f"/billing/events/{early.id}/replay", headers=api.acme)
    assert again.status_code == 200, again.text
    assert api.process() == 1
    assert _event(api, event["id"]).attempts == 3
    assert _subscriptions(api) == [("acme", "active")]
    with api.platform.billing_sessions() as session:
        audited = session.scalars(
            select(BillingAuditLog.app_id).where(BillingAuditLog.action == "webhook.replay")
        ).all()
    assert audited == ["acme", "acme"]


def test_replaying_another_apps_event_is_a_404_that_leaks_nothing(
    billing_api: BillingApi,
) -> None:
    api = billing_api
    event = _subscription_event("nobody-yet")
    assert api.deliver("acme", event).status_code == 200
    api.process()
    row = _event(api, event["id"])
    for ref, unknown in (
        (event["id"], f"evt_{uuid.uuid4().hex}"),
        (str(row.id), str(uuid.uuid4())),
        (row.id.hex[:8], "0" * 8 if not row.id.hex.startswith("0") else "f" * 8),
    ):
        theirs = api.client.post(f"/billing/events/{ref}/replay", headers=api.globex)
        missing = api.client.post(f"/billing/events/{unknown}/replay", headers=api.globex)
        assert theirs.status_code == missing.status_code == 404, theirs.text
        # Worded exactly as for an id that exists nowhere: no hint that acme has it.
        assert theirs.json() == {
            "error": {
                **missing.json()["error"],
                "message": missing.json()["error"]["message"].replace(unknown, ref),
            }
        }
    after = _event(api, event["id"])
    assert (after.status, after.attempts) == (row.status, row.attempts)
    with api.platform.billing_sessions() as session:
        replays = session.scalar(
            select(func.count())
            .select_from(BillingAuditLog)
            .where(BillingAuditLog.action == "webhook.replay")
        )
    assert replays == 0
    # Its own app can replay it.
    assert api.client.post(f"/billing/events/{row.id}/replay", headers=api.acme).status_code == 200
