"""``fleet status --verify``: every tenant database opened and checked; master learns each
database's real revision (one transaction, owned here)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db.master.models import Store
from tenantry.db.schemas import SchemaSpec
from tenantry.services.fleet_migrate import Baseline, TenantCheck, verify_tenant
from tenantry.services.fleet_targets import SharedSessions, tenant_databases


def verify_fleet(
    sessions: sessionmaker[Session],
    box: SecretBox,
    spec: SchemaSpec,
    *,
    concurrency: int = 4,
    on_check: Callable[[TenantCheck], None] | None = None,
) -> list[TenantCheck]:
    """:func:`verify_tenant` over every active tenant; master learns each real revision."""
    with sessions() as session:
        tenants = tenant_databases(session, box)
    by_slug = {t.slug: t for t in tenants}
    baseline = Baseline.of(spec)  # the scripts read once, not once per tenant
    shared = SharedSessions()  # the stores of a shared database: one session per thread
    checks: list[TenantCheck] = []
    try:
        with ThreadPoolExecutor(max(1, concurrency)) as pool:
            for check in pool.map(lambda db: verify_tenant(db, spec, baseline, shared), tenants):
                checks.append(check)
                if on_check is not None:
                    on_check(check)
    finally:
        shared.close()
    seen: dict[str | None, list[uuid.UUID]] = {}
    for check in checks:
        if check.revision is not None:
            seen.setdefault(check.revision, []).append(by_slug[check.slug].store_id)
    with sessions.begin() as session:
        for rev, ids in seen.items():
            session.execute(
                update(Store)
                .where(Store.id.in_(ids), Store.schema_revision.is_distinct_from(rev))
                .values(schema_revision=rev)
            )
    return checks
