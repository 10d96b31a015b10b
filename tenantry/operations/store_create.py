"""Creating a store: its row in master and its platform billing customer (seed 000).

Two databases, one order: billing commits first, then master. A crash in between leaves a
billing customer no store points to yet; creating the store again links that same customer
(``link_store`` is idempotent), so nothing is made twice.
"""

from __future__ import annotations

from tenantry.db.master.models import Store
from tenantry.runtime import Platform
from tenantry.services import platform_billing, stores


def create(platform: Platform, *, slug: str, name: str, plan: str, actor: str) -> Store:
    """Register store ``slug`` (not yet provisioned) and link its billing customer; the
    store as committed (read it again in the caller's session to show it)."""
    with platform.writer_sessions.begin() as session:
        store = stores.create_store(session, slug=slug, name=name, plan=plan, actor=actor)
        session.flush()
        with platform.billing_writer_sessions.begin() as billing:
            platform_billing.link_store(session, billing, store)
    return store
