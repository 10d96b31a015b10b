"""The read-only guard below the routes: services called directly under a read-only
principal are refused, on master, billing and a tenant's database, on every backend.

Proves that an ORM change, a Core UPDATE and text SQL are all refused (Forbidden, naming the
principal) and leave the databases as they were; that starting durable work (provisioning)
is refused before anything is recorded or queued; that reads, the bookkeeping a request does
(audit entries, usage counters, a key's last use) and an operator's writes still go through.
"""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select, text, update

from tenantry.db.billing.models import BillingCustomer
from tenantry.db.master.models import AuditLog, Operation, ProvisioningMode, Store
from tenantry.db.tenant.store.models import Product
from tenantry.errors import Forbidden
from tenantry.operations import provision_request, store_create
from tenantry.operations.dispatch import InProcessDispatcher
from tenantry.runtime import Platform
from tenantry.services import audit, permissions, store_data, stores
from tenantry.services.billing import customers
from tenantry.services.permissions import Principal, acting_as
from tests.platform_fixtures import backend_platform

VIEWER = Principal(kind="user", name="vi@example.com", role="viewer", read_only=True)
OPERATOR = Principal(kind="user", name="op@example.com", role="operator", read_only=False)
READ_ONLY_KEY = Principal(kind="key", name="abc123", role="admin", read_only=True)

__all__ = ["backend_platform"]


def _store(platform: Platform, slug: str) -> uuid.UUID:
    return store_create.create(platform, slug=slug, name="Acme", plan="free", actor="cli:test").id


def _add_customer(platform: Platform) -> None:
    with platform.billing_writer_sessions() as billing:
        customers.create_customer(billing, "acme", "a@example.com", "A", "cust-1")
        billing.commit()


def test_services_called_under_a_read_only_principal_change_nothing(
    backend_platform: Platform,
) -> None:
    platform = backend_platform
    store_id = _store(platform, "guarded")
    with platform.sessions() as session:
        audits_before = session.scalar(select(func.count()).select_from(AuditLog))
    for principal in (VIEWER, READ_ONLY_KEY):
        with acting_as(principal):
            # An ORM change, through the service that renames a store.
            with platform.sessions() as session:  # reading is fine, CTEs included
                cte = select(Store.id).cte("ids")
                assert session.execute(select(cte.c.id)).scalars().all() == [store_id]
            with platform.writer_sessions() as session:
                store = stores.get_store(session, store_id)
                stores.update_store(session, store, name="Renamed", actor=principal.actor)
                with pytest.raises(Forbidden) as refused:
                    session.commit()
                assert "is read-only" in refused.value.message
                assert principal.name in refused.value.message
                assert "operator" in str(refused.value.hint)
            # A Core UPDATE and text SQL, which never flush.
            with platform.writer_sessions() as session, pytest.raises(Forbidden):
                session.execute(update(Store).where(Store.id == store_id).values(name="Core"))
            with platform.writer_sessions() as session, pytest.raises(Forbidden):
                session.execute(text("DELETE FROM stores"))
            # Billing: a customer is not created.
            with pytest.raises(Forbidden):
                _add_customer(platform)
            with pytest.raises(Forbidden):
                permissions.ensure_may_write("start a backup")
    with platform.sessions() as session:
        assert stores.get_store(session, store_id).name == "Acme"
        assert session.scalar(select(func.count()).select_from(Store)) == 1
        assert session.scalar(select(func.count()).select_from(AuditLog)) == audits_before
    with platform.billing_sessions() as billing:
        ids = billing.scalars(select(BillingCustomer.external_customer_id)).all()
        assert "cust-1" not in ids


def test_bookkeeping_and_an_operator_still_write(backend_platform: Platform) -> None:
    platform = backend_platform
    store_id = _store(platform, "kept")
    with acting_as(VIEWER), platform.writer_sessions.begin() as session:
        audit.record(session, actor=VIEWER.actor, action="auth.login", target_type="user")
        store_data.count_api_call(
            session,
            store_id,
            endpoint="/stores/kept/products",
            method="GET",
            status_code=200,
            response_time_ms=1,
            ip_address="127.0.0.1",
            user_agent=None,
        )
    with acting_as(OPERATOR), platform.writer_sessions.begin() as session:
        stores.update_store(
            session, stores.get_store(session, store_id), name="Renamed", actor=OPERATOR.actor
        )
    with platform.sessions() as session:
        store = stores.get_store(session, store_id)
        assert store.name == "Renamed"
        assert store.api_calls_month == 1
        actions = session.scalars(select(AuditLog.action).where(AuditLog.actor == VIEWER.actor))
        assert list(actions) == ["auth.login"]


def test_durable_work_is_refused_before_anything_is_recorded_or_queued(
    backend_platform: Platform,
) -> None:
    platform = backend_platform
    store_id = _store(platform, "durable")
    dispatcher = InProcessDispatcher(platform.settings)
    try:
        with platform.sessions() as session:
            before = session.scalar(select(func.count()).select_from(Operation))
        with acting_as(VIEWER), pytest.raises(Forbidden):
            provision_request.request(
                platform, dispatcher, store_id, mode=ProvisioningMode.CREATE_NEW, actor="cli:test"
            )
        with platform.sessions() as session:
            assert session.scalar(select(func.count()).select_from(Operation)) == before
            assert stores.get_store(session, store_id).database_status == "provisioning"
    finally:
        dispatcher.close()


def test_a_tenant_database_is_guarded_too(backend_platform: Platform) -> None:
    platform = backend_platform
    store_id = _store(platform, "tenant-db")
    dispatcher = InProcessDispatcher(platform.settings)
    try:
        provision_request.request(
            platform, dispatcher, store_id, mode=ProvisioningMode.CREATE_NEW, actor="cli:test"
        )
        dispatcher.join()
        dispatcher.raise_failure()
    finally:
        dispatcher.close()
    with platform.sessions() as master:
        store = stores.get_store(master, store_id)
        with acting_as(VIEWER), platform.router.session(master, store) as tenant:
            assert tenant.scalar(select(func.count()).select_from(Product)) == 0
            tenant.add(Product(name="Hat", sku="hat-1", slug="hat"))
            with pytest.raises(Forbidden):
                tenant.commit()
        with platform.router.session(master, store) as tenant:
            assert tenant.scalar(select(func.count()).select_from(Product)) == 0
