"""Billing changes made through the Python library are audited in billing's log as the app."""

from __future__ import annotations

from sqlalchemy import select

from tenantry.billing.service import BillingService
from tenantry.db.billing.models import BillingAuditLog
from tenantry.runtime import Platform
from tests.platform_fixtures import platform, settings

__all__ = ["platform", "settings"]


def test_library_changes_are_audited_as_the_app(platform: Platform) -> None:
    service = BillingService(platform.billing_sessions, platform.box)
    customer = service.create_customer("acme", "a@acme.example", "A", "c-1")
    service.create_plan("acme", code="pro", name="Pro", amount_minor=100, currency="USD")
    sub = service.subscribe("acme", customer.id, "pro")
    service.cancel_subscription("acme", sub.id, at_period_end=True)
    invoice = service.create_invoice(
        "acme", customer.id, invoice_number="I-1", currency="USD", amount_minor=100
    )
    service.erase_customer("acme", customer.id)
    with platform.billing_sessions() as session:
        entries = session.scalars(
            select(BillingAuditLog).order_by(BillingAuditLog.created_at)
        ).all()
    assert [(e.action, e.actor, e.outcome, e.target_id) for e in entries] == [
        ("subscription.create", "app:acme", "succeeded", str(sub.id)),
        ("subscription.cancel", "app:acme", "succeeded", str(sub.id)),
        ("invoice.create", "app:acme", "succeeded", str(invoice.id)),
        ("customer.erase", "app:acme", "succeeded", str(customer.id)),
    ]
    assert all("a@acme.example" not in str(e.details) for e in entries)
