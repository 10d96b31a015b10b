"""Creating a store: its row in master and its platform billing customer (seed 000).

Two databases, one order: billing commits first, then master. A crash in between leaves a
billing customer no store points to yet; creating the store again links that same customer
(``link_store`` is idempotent), so nothing is made twice.
"""

from __future__ import annotations

from tenantry.db.master.models import Store
from tenantry.runtime import Platform
from tenantry.services import placement_labels, platform_billing, stores


def create(
    platform: Platform,
    *,
    slug: str,
    name: str,
    plan: str,
    actor: str,
    region: str | None = None,
    tier: str | None = None,
    region_field: str = "region",
    tier_field: str = "tier",
) -> Store:
    """Register store ``slug`` (not yet provisioned) and link its billing customer; the
    store as committed (read it again in the caller's session to show it).

    ``region``/``tier`` are its data-residency requirement (named ``region_field`` and
    ``tier_field`` in errors): its database may only ever live on servers with those labels.
    """
    residency_region = placement_labels.label(region, field=region_field)
    residency_tier = placement_labels.label(tier, field=tier_field)
    with platform.writer_sessions.begin() as session:
        store = stores.create_store(
            session,
            slug=slug,
            name=name,
            plan=plan,
            residency_region=residency_region,
            residency_tier=residency_tier,
            actor=actor,
        )
        session.flush()
        with platform.billing_writer_sessions.begin() as billing:
            platform_billing.link_store(session, billing, store)
    return store
