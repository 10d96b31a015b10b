"""Rows written through the models into migrated databases read back the same on every backend."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tenantry.db.billing.models import BillingCustomer, BillingInvoice, BillingInvoiceMilestone
from tenantry.db.master.models import Store, User
from tenantry.db.schemas import SchemaSpec, billing_schema, master_schema, tenant_schema
from tenantry.db.tenant.store.models import Order, OrderItem, Product
from tenantry.services import schema_ops
from tests.conftest import DbFactory

Engines = Callable[[URL], Engine]


def _migrated(spec: SchemaSpec, new_database: DbFactory, engines: Engines) -> Engine:
    engine = engines(new_database(spec.role.value))
    with engine.begin() as conn:
        schema_ops.migrate(conn, spec, "db", acting_app="tenantry", owner="tenantry")
    return engine


def test_master_store_keeps_uuid_and_aware_times(new_database: DbFactory, engines: Engines) -> None:
    engine = _migrated(master_schema(), new_database, engines)
    trial_end = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    with Session(engine) as session, session.begin():
        owner = User(email="ops@example.com", name="Ops")
        session.add(owner)
        session.flush()
        session.add(
            Store(name="My Shop", slug="my-shop", owner_id=owner.id, trial_ends_at=trial_end)
        )
    with Session(engine) as session:
        store = session.scalars(select(Store).where(Store.slug == "my-shop")).one()
        assert isinstance(store.id, uuid.UUID)
        assert store.trial_ends_at == trial_end  # same instant, microseconds kept
        assert store.trial_ends_at.tzinfo is not None
        assert store.created_at.tzinfo == UTC
        assert store.database_status == "provisioning"
    with Session(engine) as session:
        session.add(Store(name="Copy", slug="my-shop"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_billing_customer_is_unique_per_app_and_milestones_are_ordered(
    new_database: DbFactory, engines: Engines
) -> None:
    engine = _migrated(billing_schema(), new_database, engines)
    with Session(engine) as session, session.begin():
        customer = BillingCustomer(
            app_id="trashtech",
            external_customer_id="42",
            email="acme@example.com",
            metadata_={"industry": "waste"},
        )
        session.add(customer)
        session.add(BillingCustomer(app_id="apping", external_customer_id="42"))
        session.flush()
        invoice = BillingInvoice(
            app_id="trashtech",
            customer_id=customer.id,
            invoice_number="INV-2026-001",
            amount_minor=150_000,
        )
        invoice.milestones = [
            BillingInvoiceMilestone(position=2, name="Delivery", amount_minor=100_000),
            BillingInvoiceMilestone(position=1, name="Deposit", amount_minor=50_000),
        ]
        session.add(invoice)
    with Session(engine) as session:
        invoice = session.scalars(select(BillingInvoice)).one()
        assert [m.name for m in invoice.milestones] == ["Deposit", "Delivery"]
        assert sum(m.amount_minor for m in invoice.milestones) == invoice.amount_minor
        found = session.get(BillingCustomer, invoice.customer_id)
        assert found is not None
        assert found.metadata_ == {"industry": "waste"}
    with Session(engine) as session:
        session.add(BillingCustomer(app_id="trashtech", external_customer_id="42"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_store_order_items_go_with_their_order(new_database: DbFactory, engines: Engines) -> None:
    engine = _migrated(tenant_schema("tenantry.db.tenant.store.plugin"), new_database, engines)
    with Session(engine) as session, session.begin():
        product = Product(sku="TEE-1", slug="tee", name="Tee")
        session.add(product)
        session.flush()
        order = Order(order_number="1001", email="a@example.com", total_minor=2_500)
        order.items = [
            OrderItem(
                product_id=product.id,
                sku="TEE-1",
                name="Tee",
                quantity=1,
                unit_price_minor=2_500,
                total_minor=2_500,
            )
        ]
        session.add(order)
    with Session(engine) as session, session.begin():
        order = session.scalars(select(Order)).one()
        assert order.items[0].total_minor == 2_500
        session.delete(order)
    with Session(engine) as session:
        assert session.scalars(select(OrderItem)).all() == []
        assert session.scalars(select(Product)).one().sku == "TEE-1"
