"""GDPR erasure across tenantry's databases: a customer of a store, in the store's own
database (one transaction there), and a deleted store's platform billing customer; each
audited in master by ids and counts, never the personal data."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

from tenantry.db.billing.models import BillingCustomer
from tenantry.errors import InvalidInput
from tenantry.operations import audited
from tenantry.runtime import Platform
from tenantry.services import audit, customer_erasure, stores
from tenantry.services.billing import customers

#: The tenant schema whose tables :mod:`tenantry.services.customer_erasure` knows.
STORE_SCHEMA = "store"


def erase_store_customer(
    platform: Platform, ref: str, *, email: str | None, customer_id: str | None, actor: str
) -> dict[str, Any]:
    """Erase a customer (by ``email`` or ``customer_id``) from store ``ref``'s database in one
    transaction there; audited as ``store.erase_customer`` (refused when not found)."""
    if platform.tenant_spec.name != STORE_SCHEMA:
        raise InvalidInput(
            f"erase-customer knows the {STORE_SCHEMA!r} tenant schema, and this platform's is "
            f"{platform.tenant_spec.name!r}; nothing was changed.",
            "Erase the customer with the schema's own tools.",
        )
    with platform.sessions() as master:
        store = stores.get_store(master, ref)
        slug, store_id = store.slug, store.id
    with audited.failures(
        platform.writer_sessions,
        actor=actor,
        action="store.erase_customer",
        target_type="store",
        target_id=slug,
        store_id=store_id,
        details={"by": "email" if email is not None else "id"},
    ):
        with (
            platform.sessions() as master,
            platform.router.session(master, stores.get_store(master, store_id)) as tenant,
            tenant.begin(),
        ):
            erased = customer_erasure.erase(tenant, email=email, customer_id=customer_id)
        details = {"by": "email" if email is not None else "id", **asdict(erased)}
        with platform.writer_sessions.begin() as session:
            audit.record(
                session,
                actor=actor,
                action="store.erase_customer",
                target_type="store",
                target_id=slug,
                store_id=store_id,
                details=details,
            )
    return {"store": slug, **asdict(erased)}


def billing_customer_of(platform: Platform, ref: str) -> uuid.UUID | None:
    """The platform billing customer linked to store ``ref`` (None when it has none)."""
    with platform.sessions() as master:
        return stores.get_store(master, ref).billing_customer_id


def erase_billing_customer(platform: Platform, customer_id: uuid.UUID, *, actor: str) -> bool:
    """Erase a (deleted) store's platform billing customer: personal data goes, invoices stay;
    billing's own audit log records it. False when there is no such customer."""
    with platform.billing_writer_sessions.begin() as billing:
        customer = billing.get(BillingCustomer, customer_id)
        if customer is None:
            return False
        customers.erase_customer(billing, customer, actor=actor)
    return True
