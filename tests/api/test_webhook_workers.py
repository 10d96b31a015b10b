"""A backlog of webhook events applied by real ``tenantry worker`` processes.

Proves, on SQLite, PostgreSQL and MariaDB billing, that two workers started on the same
backlog together claim every event exactly once (one attempt each) and record each payment
once; and that a worker killed (SIGKILL) after applying a batch but before committing it
leaves nothing applied, its events claimed, and that once the dead worker's lease expires
the events are applied exactly once: each payment recorded once, each invoice paid its
amount, never twice.
"""

from __future__ import annotations

import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from tenantry.db.billing.models import BillingInvoice, BillingPayment, BillingWebhook
from tenantry.db.types import utcnow
from tenantry.services.billing.webhooks import STUCK_AFTER
from tests.api.conftest import BillingApi
from tests.helpers import running_worker

COUNT = 80


def _backlog(api: BillingApi, count: int) -> None:
    """``count`` finalized invoices of one customer, and a delivered (not yet applied)
    ``payment_intent.succeeded`` event paying each."""
    customer = api.client.post(
        "/billing/customers", headers=api.acme, json={"external_customer_id": "bulk"}
    ).json()
    for n in range(count):
        made = api.client.post(
            "/billing/invoices",
            headers=api.acme,
            json={
                "customer_id": customer["id"],
                "invoice_number": f"B-{n}",
                "currency": "USD",
                "amount_minor": 1000 + n,
                "finalize": True,
            },
        )
        assert made.status_code == 201, made.text
        invoice = made.json()
        delivered = api.deliver(
            "acme",
            {
                "id": f"evt_bulk_{n}",
                "object": "event",
                "type": "payment_intent.succeeded",
                "created": int(time.time()),
                "data": {
                    "object": {
                        "id": f"pi_bulk_{n}",
                        "object": "payment_intent",
                        "amount": invoice["amount_minor"],
                        "amount_received": invoice["amount_minor"],
                        "currency": "usd",
                        "status": "succeeded",
                        "metadata": {"invoice_id": invoice["id"], "app_id": "acme"},
                    }
                },
            },
        )
        assert delivered.status_code == 200, delivered.text


def _pending(api: BillingApi) -> int:
    with api.platform.billing_sessions() as session:
        return int(
            session.scalar(
                select(func.count())
                .select_from(BillingWebhook)
                .where(BillingWebhook.status.in_(("received", "processing")))
            )
            or 0
        )


def _assert_applied_once(api: BillingApi, count: int, *, attempts: int) -> None:
    with api.platform.billing_sessions() as session:
        events = session.execute(
            select(BillingWebhook.status, BillingWebhook.attempts, BillingWebhook.last_error)
        ).all()
        payments = session.execute(
            select(BillingPayment.processor_payment_id, BillingPayment.amount_minor)
        ).all()
        invoice_rows = session.execute(
            select(
                BillingInvoice.invoice_number,
                BillingInvoice.status,
                BillingInvoice.amount_paid_minor,
            )
        ).all()
    # An event claimed by two workers at once would show one attempt more.
    assert sorted(set(events)) == [("processed", attempts, None)]
    assert len(events) == count
    assert sorted(payments) == sorted((f"pi_bulk_{n}", 1000 + n) for n in range(count))
    assert sorted(invoice_rows) == sorted((f"B-{n}", "paid", 1000 + n) for n in range(count))


def test_two_workers_on_one_backlog_apply_each_event_once(
    billing_api: BillingApi, tmp_path: Path
) -> None:
    api = billing_api
    _backlog(api, COUNT)
    assert _pending(api) == COUNT
    with (
        running_worker(tmp_path / "worker-1.log") as one,
        running_worker(tmp_path / "worker-2.log") as two,
    ):
        deadline = time.monotonic() + 90
        while _pending(api):
            assert one.poll() is None, (tmp_path / "worker-1.log").read_text()
            assert two.poll() is None, (tmp_path / "worker-2.log").read_text()
            assert time.monotonic() < deadline, f"{_pending(api)} events still pending"
            time.sleep(0.2)
    _assert_applied_once(api, COUNT, attempts=1)


def test_a_worker_killed_mid_batch_leaves_its_events_to_be_applied_once(
    billing_api: BillingApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = billing_api
    count = 30  # one batch on every backend
    _backlog(api, count)
    log = tmp_path / "worker.log"
    monkeypatch.setenv("TENANTRY_FAILPOINTS", "webhooks.batch.applied=kill")
    with running_worker(log) as worker:
        assert worker.wait(timeout=60) == -signal.SIGKILL, log.read_text()
    monkeypatch.delenv("TENANTRY_FAILPOINTS")
    with api.platform.billing_sessions() as session:
        claimed = session.execute(select(BillingWebhook.status, BillingWebhook.attempts)).all()
        assert session.scalar(select(func.count()).select_from(BillingPayment)) == 0
        assert set(session.scalars(select(BillingInvoice.amount_paid_minor))) == {0}
    assert sorted(set(claimed)) == [("processing", 1)]  # claimed, nothing applied
    assert api.process() == 0  # the dead worker's lease still holds them

    with api.platform.billing_sessions.begin() as session:  # its lease runs out
        session.execute(
            update(BillingWebhook).values(
                processing_started_at=utcnow() - STUCK_AFTER - timedelta(seconds=1)
            )
        )
    while api.process():
        pass
    _assert_applied_once(api, count, attempts=2)
