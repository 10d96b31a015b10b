"""Tenants by size and by database status, from master's ``stores`` rows (no tenant database
is opened: ``storage_used_bytes`` is kept current by the usage rollup)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tenantry.db.master.models import Store


@dataclass(frozen=True)
class TenantSizes:
    """The ``top`` largest tenants (slug, bytes), largest first, and the sum over all."""

    largest: list[tuple[str, int]]
    total_bytes: int


def tenant_sizes(session: Session, *, top: int) -> TenantSizes:
    """The ``top`` largest stores not deleted, and the bytes of all of them together."""
    alive = Store.deleted_at.is_(None)
    largest = session.execute(
        select(Store.slug, Store.storage_used_bytes)
        .where(alive)
        .order_by(Store.storage_used_bytes.desc(), Store.slug)
        .limit(top)
    ).all()
    total = session.scalar(
        select(func.coalesce(func.sum(Store.storage_used_bytes), 0)).where(alive)
    )
    return TenantSizes([(slug, int(size or 0)) for slug, size in largest], int(total or 0))


def status_counts(session: Session) -> dict[str, int]:
    """How many stores each database status has (deleted stores included, as ``deleted``)."""
    rows = session.execute(
        select(Store.database_status, func.count()).group_by(Store.database_status)
    )
    return {str(status): int(n) for status, n in rows}
