"""Webhook events applied in batches: what they refer to is read once per batch, the events
of one batch see each other's effects exactly as when applied one by one, and two workers
claiming batches at once apply each event once."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db.billing.models import BillingPayment, BillingWebhook
from tenantry.operations import process_webhooks
from tests.services.billing.test_webhook_processing import (
    _deliver,
    _drain,
    _stored_raw,
    _sub_event,
    billing,
)

__all__ = ["billing"]  # the fixture, shared with the one-by-one tests


def _intent(kind: str, pi: str, amount: int, created: int, **metadata: str) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": f"payment_intent.{kind}",
        "created": created,
        "data": {
            "object": {
                "id": pi,
                "object": "payment_intent",
                "amount": amount,
                "amount_received": amount,
                "currency": "usd",
                "status": "succeeded" if kind == "succeeded" else "requires_payment_method",
                "customer": "cus_1",
                "latest_charge": f"ch_{pi}",
                "metadata": metadata,
            }
        },
    }


def _refund(pi: str, amount: int, refunded: int, created: int) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": "charge.refunded",
        "created": created,
        "data": {
            "object": {
                "id": f"ch_{pi}",
                "object": "charge",
                "payment_intent": pi,
                "amount": amount,
                "amount_refunded": refunded,
                "currency": "usd",
                "status": "succeeded",
                "metadata": {},
            }
        },
    }


def _payments(sessions: sessionmaker[Session]) -> dict[str, BillingPayment]:
    with sessions() as session:
        return {p.processor_payment_id: p for p in session.scalars(select(BillingPayment))}


def _statuses(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        rows = session.execute(
            select(BillingWebhook.status, func.count()).group_by(BillingWebhook.status)
        )
        return {str(status): int(n) for status, n in rows}


@pytest.mark.parametrize("batch", [50, 1], ids=["one batch", "one by one"])
def test_events_of_one_batch_see_each_others_effects(
    billing: tuple[sessionmaker[Session], SecretBox], batch: int
) -> None:
    sessions, box = billing
    now = int(time.time())
    events = [
        _intent("succeeded", "pi_a", 500, now, external_customer_id="cust-1"),
        _refund("pi_a", 500, 500, now + 1),  # the payment the batch just recorded
        _intent("payment_failed", "pi_a", 500, now - 10),  # older, and a refunded one stays
        _refund("pi_b", 800, 300, now),  # a refund for a payment never seen
        _intent("succeeded", "pi_b", 800, now - 5),
        _intent("succeeded", "pi_c", 100, now, app_id="someone-else"),  # another app's
        _intent("succeeded", "pi_d", 700, now),
        _intent("succeeded", "pi_d", 700, now),  # the same payment twice in one batch
    ]
    for event in events:
        _deliver(sessions, box, "stripe", event)

    handled = process_webhooks.process_pending(sessions, limit=batch)
    assert handled == min(batch, len(events))
    _drain(sessions)

    payments = _payments(sessions)
    assert set(payments) == {"pi_a", "pi_b", "pi_d"}
    a, b, d = payments["pi_a"], payments["pi_b"], payments["pi_d"]
    assert (a.status, a.amount_refunded_minor) == ("refunded", 500)
    assert a.customer_id is not None  # the app's customer cust-1
    assert (b.status, b.amount_minor, b.amount_refunded_minor) == ("partially_refunded", 800, 300)
    assert (d.status, d.amount_minor) == ("succeeded", 700)
    assert _statuses(sessions) == {"processed": 7, "ignored": 1}


def test_one_failing_event_does_not_undo_the_rest_of_its_batch(
    billing: tuple[sessionmaker[Session], SecretBox], backend: str
) -> None:
    sessions, box = billing
    now = int(time.time())
    good = [_intent("succeeded", f"pi_{i}", 100 + i, now) for i in range(5)]
    # Readable, but a plan code longer than its column: PostgreSQL and MariaDB refuse it when
    # the batch is written (SQLite keeps it).
    bad = _sub_event("active", now, kind="created")
    bad["data"]["object"]["metadata"]["plan_code"] = "p" * 100
    for event in [*good[:2], bad, *good[2:]]:
        _deliver(sessions, box, "stripe", event)

    assert process_webhooks.process_pending(sessions, limit=50) == 6

    payments = _payments(sessions)
    assert {f"pi_{i}" for i in range(5)} <= set(payments)
    assert all(payments[f"pi_{i}"].amount_minor == 100 + i for i in range(5))
    expected = {"processed": 6} if backend == "sqlite" else {"processed": 5, "failed": 1}
    assert _statuses(sessions) == expected
    with sessions() as session:
        attempts = set(session.scalars(select(BillingWebhook.attempts)))
    assert attempts == {1}  # the batch undone and applied again is still one attempt each


def test_an_unreadable_event_is_recorded_failed_in_the_batch_beside_the_others(
    billing: tuple[sessionmaker[Session], SecretBox],
) -> None:
    sessions, box = billing
    now = int(time.time())
    for i in range(3):
        _deliver(sessions, box, "stripe", _intent("succeeded", f"pi_{i}", 100 + i, now))
    unreadable = _stored_raw(sessions, "not json")  # stored before ingestion read events

    assert process_webhooks.process_pending(sessions, limit=50) == 4

    assert set(_payments(sessions)) == {"pi_0", "pi_1", "pi_2"}
    assert _statuses(sessions) == {"processed": 3, "failed": 1}
    with sessions() as session:
        row = session.get(BillingWebhook, unreadable)
        assert row is not None
        assert (row.attempts, row.next_attempt_at, row.result) == (1, None, None)
        assert (row.last_error or "").startswith("MalformedEvent")
        assert "not retried" in (row.last_error or "")
        attempts = set(session.scalars(select(BillingWebhook.attempts)))
    assert attempts == {1}  # each claimed once


def test_two_workers_at_once_claim_and_apply_each_event_once(
    billing: tuple[sessionmaker[Session], SecretBox],
) -> None:
    sessions, box = billing
    now = int(time.time())
    count = 120
    for i in range(count):
        _deliver(sessions, box, "stripe", _intent("succeeded", f"pi_{i}", 100 + i, now))
    start = threading.Barrier(2)
    handled: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            # Small batches, so the two claim over and over while the other applies.
            while n := process_webhooks.process_pending(sessions, limit=7):
                handled.append(n)
        except BaseException as exc:  # shown by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert sum(handled) == count
    payments = _payments(sessions)
    assert sorted((p.processor_payment_id, p.amount_minor) for p in payments.values()) == sorted(
        (f"pi_{i}", 100 + i) for i in range(count)
    )
    with sessions() as session:
        attempts = set(session.scalars(select(BillingWebhook.attempts)))
    assert attempts == {1}
    assert _statuses(sessions) == {"processed": count}
