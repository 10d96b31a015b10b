"""The platform is an app of billing (seed 000's data linking pattern).

Each store gets a billing customer with ``app_id='platform'`` and ``external_customer_id`` =
the store's id, and the store keeps that customer's id in ``billing_customer_id``. No key
crosses the two databases: the link lives in the application, as the seed prescribes.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from tenantry.db.master.models import Store
from tenantry.services.billing import customers

PLATFORM_APP = "platform"


def link_store(master: Session, billing: Session, store: Store) -> uuid.UUID:
    """Give ``store`` its platform billing customer (idempotent); the caller commits billing
    first, then master, so a crash in between is healed by linking again."""
    customer, _ = customers.create_customer(
        billing, PLATFORM_APP, None, store.name, str(store.id), {"slug": store.slug}
    )
    billing.flush()
    store.billing_customer_id = customer.id
    return customer.id
