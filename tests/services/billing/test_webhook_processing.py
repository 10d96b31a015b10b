"""Processing webhook events: out of order, replayed, stuck, failing, from Stripe and Tilled."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import Engine, func, select, update
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db.billing.models import (
    BillingIdempotencyKey,
    BillingPayment,
    BillingSubscription,
    BillingWebhook,
)
from tenantry.db.schemas import billing_schema
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, NotFound
from tenantry.operations import process_webhooks
from tenantry.services.billing import customers, webhook_intake, webhook_secrets, webhooks
from tests.conftest import DbFactory
from tests.templates import migrated_database

STRIPE_SECRET = "whsec_stripe_test_secret"
TILLED_SECRET = "tilled_test_secret_123"


@pytest.fixture
def billing(
    new_database: DbFactory, engines: Callable[[URL], Engine]
) -> tuple[sessionmaker[Session], SecretBox]:
    """Sessions on a migrated billing database of the backend, with secrets for app acme."""
    url = new_database("billing", create=False)
    migrated_database(url, billing_schema())
    engine = engines(url)
    sessions = sessionmaker(engine, expire_on_commit=False)
    box = SecretBox(MultiFernet([Fernet(Fernet.generate_key())]))
    with sessions.begin() as session:
        webhook_secrets.add_secret(session, box, "acme", "stripe", STRIPE_SECRET, actor="cli:test")
        webhook_secrets.add_secret(session, box, "acme", "tilled", TILLED_SECRET, actor="cli:test")
        customers.create_customer(
            session, "acme", "a@acme.example", "A", "cust-1", {"stripe": "cus_1"}
        )
    return sessions, box


def _deliver(
    sessions: sessionmaker[Session], box: SecretBox, processor: str, event: dict[str, Any]
) -> webhook_intake.Ingested:
    body = json.dumps(event).encode()
    if processor == "stripe":
        t = str(int(time.time()))
        secret, header = STRIPE_SECRET, "t={t},v1={mac}"
    else:
        t = str(int(time.time() * 1000))  # Tilled signs milliseconds
        secret, header = TILLED_SECRET, "t={t},v1={mac}"
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    with sessions() as session:
        stored = webhook_intake.ingest(
            session,
            box,
            processor=processor,
            app_id="acme",
            body=body,
            signature=header.format(t=t, mac=mac),
        )
        session.commit()  # the caller commits before answering 2xx
    return stored


def _drain(sessions: sessionmaker[Session]) -> None:
    while process_webhooks.process_pending(sessions):
        pass


def _sub_event(status: str, created: int, *, kind: str = "updated") -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": f"customer.subscription.{kind}",
        "created": created,
        "data": {
            "object": {
                "id": "sub_1",
                "object": "subscription",
                "status": status,
                "customer": "cus_x",
                "metadata": {"external_customer_id": "cust-1", "plan_code": "pro"},
                "current_period_start": created,
                "current_period_end": created + 2_592_000,
                "cancel_at_period_end": False,
                "items": {"data": []},
            }
        },
    }


def test_subscription_events_out_of_order_never_regress(
    billing: tuple[sessionmaker[Session], SecretBox],
) -> None:
    sessions, box = billing
    t0 = int(time.time()) - 1000
    _deliver(sessions, box, "stripe", _sub_event("active", t0 + 10, kind="created"))
    _deliver(sessions, box, "stripe", _sub_event("canceled", t0 + 30, kind="deleted"))
    _deliver(sessions, box, "stripe", _sub_event("past_due", t0 + 20))  # late
    _drain(sessions)
    with sessions() as session:
        sub = session.scalar(select(BillingSubscription))
        assert sub is not None
        assert sub.status == "canceled"
        assert sub.plan_code == "pro"
        results = [
            w.result or ""
            for w in session.scalars(select(BillingWebhook).order_by(BillingWebhook.received_at))
        ]
    assert "older than the last applied" in results[2]
    _deliver(sessions, box, "stripe", _sub_event("active", t0 + 40))  # newer, but canceled is final
    _drain(sessions)
    with sessions() as session:
        assert session.scalar(select(BillingSubscription.status)) == "canceled"


def test_tilled_events_and_refunds(billing: tuple[sessionmaker[Session], SecretBox]) -> None:
    sessions, box = billing
    created = utcnow().isoformat()
    succeeded = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "created_at": created,
        "data": {
            "id": "pi_t1",
            "object": "payment_intent",
            "amount": 2500,
            "amount_received": 2500,
            "currency": "usd",
            "status": "succeeded",
            "metadata": {"external_customer_id": "cust-1"},
        },
    }
    refund = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "charge.refunded",
        "created_at": created,
        "data": {
            "id": "ch_t1",
            "object": "charge",
            "payment_intent_id": "pi_t1",
            "amount": 2500,
            "amount_refunded": 1000,
            "currency": "usd",
            "metadata": {},
        },
    }
    assert not _deliver(sessions, box, "tilled", succeeded).duplicate
    _deliver(sessions, box, "tilled", refund)
    _drain(sessions)
    with sessions() as session:
        payment = session.scalar(select(BillingPayment))
        assert payment is not None
        assert payment.processor == "tilled"
        assert payment.status == "partially_refunded"
        assert payment.amount_refunded_minor == 1000
        assert payment.customer_id is not None


def test_replay_changes_nothing_twice(billing: tuple[sessionmaker[Session], SecretBox]) -> None:
    sessions, box = billing
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {"object": {"id": "pi_r", "amount": 700, "currency": "eur", "metadata": {}}},
    }
    stored = _deliver(sessions, box, "stripe", event)
    _drain(sessions)
    for _ in range(3):
        with sessions.begin() as session:
            webhooks.replay(session, webhooks.get_webhook(session, str(stored.id)), actor="t")
        _drain(sessions)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(BillingPayment)) == 1
        row = session.get(BillingWebhook, stored.id)
        assert row is not None
        assert row.status == "processed"
        assert row.attempts == 4


def _stored_raw(
    sessions: sessionmaker[Session], payload: str, *, app_id: str = "acme", event_id: str = ""
) -> uuid.UUID:
    """A row as an earlier version stored it, before ingestion read events."""
    row = BillingWebhook(
        app_id=app_id,
        processor="stripe",
        event_id=event_id or f"evt_{uuid.uuid4().hex}",
        event_type="payment_intent.succeeded",
        payload=payload,
    )
    with sessions.begin() as session:
        session.add(row)
    return row.id


@pytest.mark.parametrize(
    "payload",
    [
        '{"id": "evt_old", "type": "payment_intent.succeeded", "created": 1, "data": "x"}',
        '{"id": "evt_old", "type": "payment_intent.succeeded", "data": {"object": {}}}',
        '{"id": "evt_old", "type": "payment_intent.succeeded", "created": 1,'
        ' "data": {"object": {"id": "pi_1", "amount": 9223372036854775808}}}',
        "not json",
    ],
    ids=["data-not-object", "no-created", "amount-overflows", "not-json"],
)
def test_an_unreadable_stored_event_fails_once_and_is_never_retried(
    billing: tuple[sessionmaker[Session], SecretBox], payload: str
) -> None:
    sessions, _ = billing
    stored = _stored_raw(sessions, payload)
    assert process_webhooks.process_pending(sessions) == 1
    with sessions() as session:
        row = session.get(BillingWebhook, stored)
        assert row is not None
        assert (row.status, row.attempts, row.next_attempt_at) == ("failed", 1, None)
        assert "MalformedEvent" in (row.last_error or "")
        assert "not retried" in (row.last_error or "")
    with sessions.begin() as session:  # whatever time passes, it is never due again
        session.execute(update(BillingWebhook).values(received_at=utcnow() - timedelta(days=9)))
    assert process_webhooks.process_pending(sessions) == 0
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(BillingPayment)) == 0


def test_transient_failures_back_off_and_stuck_events_are_taken_again(
    billing: tuple[sessionmaker[Session], SecretBox], monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions, box = billing

    def database_gone(*_: object) -> None:  # what a dropped connection raises mid-apply
        raise OperationalError("UPDATE billing_payments", {}, ConnectionError("server closed"))

    monkeypatch.setattr(webhooks, "apply_event", database_gone)
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {"object": {"id": "pi_t", "amount": 100, "currency": "usd", "metadata": {}}},
    }
    stored = _deliver(sessions, box, "stripe", event)
    _drain(sessions)
    with sessions() as session:
        row = session.get(BillingWebhook, stored.id)
        assert row is not None
        assert row.status == "failed"
        assert row.attempts == 1
        assert "OperationalError" in (row.last_error or "")
        assert row.next_attempt_at is not None
        assert row.next_attempt_at > utcnow()
    assert process_webhooks.process_pending(sessions) == 0  # not due yet: backoff
    monkeypatch.undo()
    with sessions.begin() as session:
        session.execute(update(BillingWebhook).values(next_attempt_at=utcnow()))
    assert process_webhooks.process_pending(sessions) == 1
    with sessions() as session:
        row = session.get(BillingWebhook, stored.id)
        assert row is not None
        assert (row.status, row.attempts) == ("processed", 2)

    good = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {"object": {"id": "pi_s", "amount": 100, "currency": "usd", "metadata": {}}},
    }
    stuck = _deliver(sessions, box, "stripe", good)
    with sessions.begin() as session:  # a worker claimed it and died
        session.execute(
            update(BillingWebhook)
            .where(BillingWebhook.id == stuck.id)
            .values(status="processing", processing_started_at=utcnow() - timedelta(minutes=10))
        )
    _drain(sessions)
    with sessions() as session:
        row = session.get(BillingWebhook, stuck.id)
        assert row is not None
        assert row.status == "processed"


def test_expired_idempotency_keys_are_purged(
    billing: tuple[sessionmaker[Session], SecretBox],
) -> None:
    from tenantry.operations import idempotency

    sessions, _ = billing
    assert idempotency.reserve(sessions, "acme", "old", "h") is None
    assert idempotency.reserve(sessions, "acme", "new", "h") is None
    idempotency.record(sessions, "acme", "old", 201, "{}")
    with sessions.begin() as session:
        session.execute(
            update(BillingIdempotencyKey)
            .where(BillingIdempotencyKey.key == "old")
            .values(expires_at=utcnow() - timedelta(hours=1))
        )
    assert idempotency.purge_expired(sessions) == 1
    with sessions() as session:
        assert session.scalars(select(BillingIdempotencyKey.key)).all() == ["new"]


def test_ended_periods_roll_forward_or_cancel(
    billing: tuple[sessionmaker[Session], SecretBox],
) -> None:
    from tenantry.services.billing import plans, subscriptions

    sessions, _ = billing
    with sessions.begin() as session:
        customer = customers.get_by_external_id(session, "acme", "cust-1")
        plan = plans.create_plan(
            session, "acme", code="m", name="Monthly", amount_minor=900, currency="USD"
        )
        keep = subscriptions.create_subscription(session, customer, plan)
        leave = subscriptions.create_subscription(session, customer, plan)
        subscriptions.cancel(leave, at_period_end=True)
        past = utcnow() - timedelta(days=1)
        for sub in (keep, leave):
            sub.current_period_end = past
        keep_id, leave_id = keep.id, leave.id
    with sessions.begin() as session:
        assert subscriptions.renew_due(session) == 2
    with sessions() as session:
        kept = session.get(BillingSubscription, keep_id)
        left = session.get(BillingSubscription, leave_id)
        assert kept is not None
        assert left is not None
        assert kept.status == "active"
        assert kept.current_period_start == past
        assert kept.current_period_end is not None
        assert kept.current_period_end > utcnow()
        assert left.status == "canceled"
    with sessions.begin() as session:
        assert subscriptions.renew_due(session) == 0


def test_an_event_stuck_too_often_is_failed_not_taken_again(
    billing: tuple[sessionmaker[Session], SecretBox],
) -> None:
    sessions, _ = billing
    stored = _stored_raw(sessions, "{}")
    with sessions.begin() as session:  # workers died applying it, every time
        session.execute(
            update(BillingWebhook).values(
                status="processing",
                attempts=webhooks.MAX_ATTEMPTS,
                processing_started_at=utcnow() - timedelta(minutes=10),
            )
        )
    assert process_webhooks.process_pending(sessions) == 0
    with sessions() as session:
        row = session.get(BillingWebhook, stored)
        assert row is not None
        assert (row.status, row.next_attempt_at) == ("failed", None)
        assert "not retried" in (row.last_error or "")


def test_a_value_the_database_refuses_fails_once_and_is_never_retried(
    billing: tuple[sessionmaker[Session], SecretBox], backend: str
) -> None:
    sessions, box = billing
    event = _sub_event("active", int(time.time()), kind="created")
    # Readable, but the plan code is longer than its column: PostgreSQL and MariaDB refuse it
    # on every attempt alike (SQLite stores it).
    event["data"]["object"]["metadata"]["plan_code"] = "p" * 100
    stored = _deliver(sessions, box, "stripe", event)
    _drain(sessions)
    with sessions() as session:
        row = session.get(BillingWebhook, stored.id)
        assert row is not None
        assert (row.attempts, row.next_attempt_at) == (1, None)
        if backend == "sqlite":
            assert row.status == "processed"
        else:
            assert row.status == "failed"
            assert "DataError" in (row.last_error or "")
            assert "not retried" in (row.last_error or "")


def test_an_event_id_two_apps_share_is_found_per_app(
    billing: tuple[sessionmaker[Session], SecretBox],
) -> None:
    sessions, _ = billing
    ids = {app: _stored_raw(sessions, "{}", app_id=app, event_id="evt_1") for app in ("a", "b")}
    with sessions() as session:
        for app, stored in ids.items():
            assert webhooks.get_webhook(session, "evt_1", app_id=app).id == stored
        with pytest.raises(Conflict, match="several stored webhook events"):
            webhooks.get_webhook(session, "evt_1")
        assert webhooks.get_webhook(session, str(ids["a"])).app_id == "a"
        with pytest.raises(NotFound):
            webhooks.get_webhook(session, "evt_1", app_id="c")
