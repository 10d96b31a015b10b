"""The billing overview the console reads, on each backend's billing database: the apps with
their counts, webhook failure rates per app and processor, and pages of one app's records
(newest first, 50 a page, an app never seeing another's)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.db.billing.models import BillingWebhook
from tenantry.db.schemas import billing_schema
from tenantry.db.types import utcnow
from tenantry.errors import InvalidInput
from tenantry.services.billing import customers, invoices, overview
from tests.conftest import DbFactory
from tests.templates import migrated_database


@pytest.fixture
def sessions(new_database: DbFactory, engines: Callable[[URL], Engine]) -> sessionmaker[Session]:
    url = new_database("billing", create=False)
    migrated_database(url, billing_schema())
    return sessionmaker(engines(url), expire_on_commit=False)


def _event(app: str, processor: str, n: int, status: str) -> BillingWebhook:
    return BillingWebhook(
        app_id=app,
        processor=processor,
        event_id=f"evt_{app}_{processor}_{n}",
        event_type="payment_intent.succeeded",
        payload="{}",
        status=status,
        attempts=1,
        received_at=utcnow() - timedelta(minutes=n),
    )


def test_apps_rates_and_pages(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        made = [
            customers.create_customer(session, "acme", None, f"C{i}", f"cust-{i:02d}")[0]
            for i in range(55)
        ]
        customers.create_customer(session, "globex", None, None, "other")
        session.flush()
        invoices.create_invoice(
            session,
            made[0],
            invoice_number="INV-1",
            currency="USD",
            milestones=[
                invoices.MilestoneInput(name="Deposit", amount_minor=1000),
                invoices.MilestoneInput(name="Balance", amount_minor=2000),
            ],
        )
        # acme/stripe: 1 failed of 4; acme/tilled: 0 of 1; globex/stripe: 2 of 2.
        statuses = ["failed", "processed", "processed", "ignored"]
        session.add_all(_event("acme", "stripe", n, s) for n, s in enumerate(statuses))
        session.add(_event("acme", "tilled", 10, "processed"))
        session.add_all(_event("globex", "stripe", n, "failed") for n in range(2))
        session.add(_event("globex", "tilled", 25 * 60, "failed"))  # 25 h ago: not in the rate

    with sessions() as session:
        apps = {a.app_id: a.counts for a in overview.apps(session)}
        assert apps["acme"] == {"customers": 55, "invoices": 1, "events": 5}
        assert apps["globex"] == {"customers": 1, "events": 3}
        rates = [
            (r.app_id, r.processor, r.total, r.failed, r.percent)
            for r in overview.webhook_rates(session)
        ]
        assert rates == [
            ("acme", "stripe", 4, 1, 25.0),
            ("acme", "tilled", 1, 0, 0.0),
            ("globex", "stripe", 2, 2, 100.0),
        ]

        first, total = overview.page_of(session, "customers", "acme", limit=50)
        second, _ = overview.page_of(session, "customers", "acme", limit=50, offset=50)
        assert total == 55
        assert (len(first), len(second)) == (50, 5)
        seen = {c.external_customer_id for c in first + second}
        assert seen == {f"cust-{i:02d}" for i in range(55)}  # every one once, none of globex

        failed, n_failed = overview.page_of(session, "events", "acme", status="failed")
        assert n_failed == 1
        assert [e.event_id for e in failed] == ["evt_acme_stripe_0"]
        events, _ = overview.page_of(session, "events", "acme")
        # Newest first: received n minutes ago, the smallest n first.
        assert [e.event_id for e in events] == [
            *(f"evt_acme_stripe_{n}" for n in range(4)),
            "evt_acme_tilled_10",
        ]

        [invoice], _ = overview.page_of(session, "invoices", "acme")
        assert [m.name for m in invoice.milestones] == ["Deposit", "Balance"]
        with pytest.raises(InvalidInput, match="unknown list 'secrets'"):
            overview.page_of(session, "secrets", "acme")
