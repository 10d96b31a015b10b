"""Billing customers: one per app and app-side customer id (seed 000's data linking)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenantry.db.billing.models import BillingCustomer
from tenantry.db.savepoints import insert_in_savepoint
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput, NotFound
from tenantry.services.billing import audit, lookup, validation


def _by_external(session: Session, app_id: str, external_id: str) -> BillingCustomer | None:
    return session.scalar(
        select(BillingCustomer).where(
            BillingCustomer.app_id == app_id, BillingCustomer.external_customer_id == external_id
        )
    )


def create_customer(
    session: Session,
    app_id: str,
    email: str | None,
    name: str | None,
    external_customer_id: str,
    metadata: dict[str, Any] | None = None,
) -> tuple[BillingCustomer, bool]:
    """The seed's ``createCustomer``: the app's customer, created once.

    Idempotent on (app_id, external_customer_id): a second call returns the first customer
    (and False). Concurrent first calls are settled by the unique constraint.
    """
    validation.app_id(app_id)
    validation.external_id(external_customer_id)
    metadata = metadata or {}
    validation.no_card_data(metadata, where="metadata")
    if name is not None:
        validation.no_card_data(name, where="name")
    existing = _by_external(session, app_id, external_customer_id)
    if existing is not None:
        return existing, False
    customer = BillingCustomer(
        app_id=app_id,
        external_customer_id=external_customer_id,
        email=validation.email(email),
        name=(name or None),
        metadata_=metadata,
    )
    refused = insert_in_savepoint(session, customer)
    if refused is None:
        return customer, True
    found = _by_external(session, app_id, external_customer_id)
    if found is None:
        raise refused
    return found, False


def get_customer(session: Session, app_id: str, customer_id: str | uuid.UUID) -> BillingCustomer:
    """The app's customer with tenantry id ``customer_id`` (another app's is not found)."""
    return lookup.owned(session, BillingCustomer, app_id, customer_id, "customer")


def get_by_external_id(session: Session, app_id: str, external_id: str) -> BillingCustomer:
    """The app's customer with the app's own id ``external_id``."""
    customer = _by_external(session, app_id, external_id)
    if customer is None:
        raise NotFound(f"no customer with external id {external_id!r}.")
    return customer


def update_customer(
    session: Session,
    customer: BillingCustomer,
    *,
    email: str | None = None,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> BillingCustomer:
    """Change contact data or metadata (an erased customer cannot be changed)."""
    if customer.erased_at is not None:
        raise Conflict("this customer's personal data was erased; it cannot be updated.")
    if email is not None:
        customer.email = validation.email(email)
    if name is not None:
        validation.no_card_data(name, where="name")
        customer.name = name
    if metadata is not None:
        validation.no_card_data(metadata, where="metadata")
        customer.metadata_ = metadata
    customer.updated_at = utcnow()
    return customer


def list_customers(
    session: Session,
    app_id: str,
    *,
    limit: int = 50,
    offset: int = 0,
    email: str | None = None,
) -> tuple[list[BillingCustomer], int]:
    """A page of the app's customers (oldest first) and how many there are."""
    if not 1 <= limit <= 500 or offset < 0:
        raise InvalidInput("limit must be 1 to 500 and offset at least 0.")
    query = select(BillingCustomer).where(BillingCustomer.app_id == app_id)
    if email:
        query = query.where(BillingCustomer.email == email)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(BillingCustomer.created_at, BillingCustomer.id).limit(limit).offset(offset)
    )
    return list(rows), int(total)


def erase_customer(session: Session, customer: BillingCustomer, *, actor: str) -> BillingCustomer:
    """GDPR erasure: personal data goes, financial records stay, an audit entry says so."""
    if customer.erased_at is not None:
        return customer
    erased = [
        f
        for f, v in (
            ("email", customer.email),
            ("name", customer.name),
            ("metadata", customer.metadata_),
        )
        if v
    ]
    customer.email = None
    customer.name = None
    customer.metadata_ = {}
    customer.erased_at = utcnow()
    audit.record(
        session,
        app_id=customer.app_id,
        actor=actor,
        action="customer.erase",
        target_type="billing_customer",
        target_id=str(customer.id),
        details={"erased_fields": erased, "external_customer_id": customer.external_customer_id},
    )
    return customer
