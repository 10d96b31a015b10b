"""GDPR erasure of a store's customer in the store's own database, on every backend: no
trace of the email left in any table, orders kept, the erasure audited without it."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select

from tenantry.db.master.models import AuditLog
from tenantry.db.tenant.store.models import Customer, Order, OrderItem
from tenantry.errors import NotFound
from tenantry.operations import customer_erase
from tenantry.runtime import Platform
from tenantry.services import stores
from tests.conftest import DbFactory
from tests.platform_fixtures import platform, settings
from tests.store_setup import connect_store

__all__ = ["platform", "settings"]

EMAIL = "Jane.Doe+gdpr@example.org"


def _store_on(platform: Platform, url: str, slug: str) -> None:
    """A store connected to the (empty) database at ``url``."""
    connect_store(platform, slug, url)


def _order(number: str, email: str, customer: uuid.UUID | None, *, jane: bool = True) -> Order:
    address = (
        {"name": "Jane Doe", "line1": "1 Privacy Lane", "email": email, "phone": "+4412"}
        if jane
        else {"name": "Sam", "line1": "2 Other Road", "email": email}
    )
    order = Order(
        order_number=number,
        customer_id=customer,
        currency="EUR",
        subtotal_minor=1000,
        discount_minor=0,
        tax_minor=0,
        shipping_minor=0,
        total_minor=1000,
        email=email,
        shipping_address=address,
        billing_address=address,
        placed_at=datetime.now(UTC),
    )
    order.items = [
        OrderItem(sku="S1", name="Socks", quantity=1, unit_price_minor=1000, total_minor=1000)
    ]
    return order


def _seed(platform: Platform, slug: str) -> None:
    with platform.sessions() as master:
        store = stores.get_store(master, slug)
        with platform.router.session(master, store) as tenant, tenant.begin():
            jane = Customer(email=EMAIL, first_name="Jane", last_name="Doe", phone="+4412")
            other = Customer(email="someone@else.example", first_name="Sam")
            tenant.add_all([jane, other])
            tenant.flush()
            tenant.add_all(
                [
                    _order("A-1", EMAIL, jane.id),
                    # a guest order with the same address in another case
                    _order("A-2", EMAIL.lower(), None),
                    _order("B-1", "someone@else.example", other.id, jane=False),
                ]
            )


def _every_value(platform: Platform, slug: str) -> str:
    """Every row of every table of the store's database, as one text to search."""
    with platform.sessions() as master:
        store = stores.get_store(master, slug)
        with platform.router.connection(master, store) as conn:
            meta = MetaData()
            meta.reflect(conn)
            rows = [
                json.dumps([str(v) for v in row])
                for table in meta.sorted_tables
                for row in conn.execute(select(table))
            ]
    return "\n".join(rows)


def test_erase_customer_leaves_no_trace_of_the_email(
    platform: Platform, new_database: DbFactory, backend: str
) -> None:
    slug = f"gdpr-{uuid.uuid4().hex[:6]}"
    _store_on(platform, new_database("gdpr").render_as_string(hide_password=False), slug)
    _seed(platform, slug)
    assert EMAIL.lower() in _every_value(platform, slug).lower()  # the search can fail

    done = customer_erase.erase_store_customer(
        platform, slug, email=EMAIL.upper(), customer_id=None, actor="cli:alice"
    )

    assert done["customer_deleted"] is True
    assert done["orders_anonymised"] == 2
    everything = _every_value(platform, slug).lower()
    for trace in (EMAIL.lower(), "jane", "privacy lane", "+4412"):
        assert trace not in everything, trace
    assert "someone@else.example" in everything  # another customer is untouched
    with platform.sessions() as master:
        store = stores.get_store(master, slug)
        with platform.router.session(master, store) as tenant:
            numbers = sorted(tenant.scalars(select(Order.order_number)))
            assert numbers == ["A-1", "A-2", "B-1"]  # orders kept for the books
            assert sorted(tenant.scalars(select(Order.total_minor))) == [1000, 1000, 1000]
        entries = master.scalars(
            select(AuditLog).where(AuditLog.action == "store.erase_customer")
        ).all()
    assert [(e.actor, e.outcome, e.target_id) for e in entries] == [
        ("cli:alice", "succeeded", slug)
    ]
    assert EMAIL.lower() not in json.dumps(entries[0].details).lower()
    assert entries[0].details["orders_anonymised"] == 2


def test_erasing_an_unknown_customer_is_refused_and_audited(
    platform: Platform, tmp_path: Path
) -> None:
    slug = f"gdpr-{uuid.uuid4().hex[:6]}"
    _store_on(platform, f"sqlite:///{tmp_path / 'shop.db'}", slug)
    _seed(platform, slug)
    before = _every_value(platform, slug)
    with pytest.raises(NotFound, match="nothing was changed"):
        customer_erase.erase_store_customer(
            platform, slug, email="nobody@example.org", customer_id=None, actor="cli:alice"
        )
    assert _every_value(platform, slug) == before
    with platform.sessions() as master:
        entry = master.scalars(
            select(AuditLog).where(AuditLog.action == "store.erase_customer")
        ).one()
    assert entry.outcome == "refused"
    assert "nobody@example.org" not in json.dumps(entry.details)
