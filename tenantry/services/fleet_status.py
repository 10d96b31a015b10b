"""The fleet as master records it: tenants per revision, lagging and failed tenants, runs.

Read-only, from master alone (no tenant database is opened): ``fleet status`` and the
followers of a queued run read here.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Subquery, and_, func, select
from sqlalchemy.orm import Session

from tenantry.db import migrations
from tenantry.db.master.models import (
    DatabaseStatus,
    FleetResult,
    FleetRun,
    Store,
    TenantOutcome,
)
from tenantry.db.schemas import SchemaSpec
from tenantry.errors import NotFound


@dataclass(frozen=True)
class FleetStatus:
    """The fleet as master records it."""

    head: str | None
    total: int
    per_revision: dict[str, int]
    lagging: list[str]  # slugs not at head
    failed: list[dict[str, Any]]  # latest outcome failed or refused: slug, error, when
    last_run: dict[str, Any] | None


def run_summary(run: FleetRun) -> dict[str, Any]:
    """A run as ``fleet status`` shows it (``last_run``)."""
    return {
        "id": str(run.id),
        "status": run.status,
        "target": run.goal,
        "total": run.total,
        "migrated": run.migrated,
        "current": run.current,
        "failed": run.failed,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "holder": run.holder,
    }


def fleet_status(session: Session, spec: SchemaSpec) -> FleetStatus:
    """Counts from master only (no tenant database is opened)."""
    head = migrations.head(spec)
    stores = session.execute(
        select(Store.id, Store.slug, Store.schema_revision)
        .where(Store.database_status == DatabaseStatus.ACTIVE, Store.deleted_at.is_(None))
        .order_by(Store.slug)
    ).all()
    per_revision = Counter(s.schema_revision or "unknown" for s in stores)
    tried, latest = _latest_tried()
    last_outcomes = session.execute(
        select(FleetResult)
        .join(
            latest,
            and_(FleetResult.store_id == latest.c.store_id, FleetResult.finished_at == latest.c.at),
        )
        .where(tried)
    ).scalars()
    active = {s.id for s in stores}
    failed = [
        {"slug": r.slug, "status": r.status, "error": r.error, "at": r.finished_at}
        for r in last_outcomes
        if r.store_id in active and r.status in (TenantOutcome.FAILED, TenantOutcome.REFUSED)
    ]
    run = session.scalar(select(FleetRun).order_by(FleetRun.created_at.desc()).limit(1))
    return FleetStatus(
        head,
        len(stores),
        dict(per_revision),
        [s.slug for s in stores if s.schema_revision != head],
        sorted(failed, key=lambda f: f["slug"]),
        run_summary(run) if run is not None else None,
    )


def run_progress(session: Session, run_id: uuid.UUID) -> FleetRun:
    """The run's row (its counters are its progress)."""
    run = session.get(FleetRun, run_id)
    if run is None:
        raise NotFound(f"no fleet run {run_id}.", "See the last run with `tenantry fleet status`.")
    return run


@dataclass(frozen=True)
class FleetCounts:
    """The fleet in numbers only (what metrics export): aggregate queries, no rows."""

    per_revision: dict[str, int]
    lagging: int
    failed: int


def fleet_counts(session: Session, spec: SchemaSpec) -> FleetCounts:
    """:func:`fleet_status`'s counts, computed by the database (bounded whatever the fleet's
    size: one row per revision, two counts)."""
    head = migrations.head(spec)
    active = and_(Store.database_status == DatabaseStatus.ACTIVE, Store.deleted_at.is_(None))
    per_revision = {
        revision or "unknown": int(n)
        for revision, n in session.execute(
            select(Store.schema_revision, func.count())
            .where(active)
            .group_by(Store.schema_revision)
        )
    }
    lagging = sum(n for revision, n in per_revision.items() if revision != head)
    tried, latest = _latest_tried()
    failed = session.scalar(
        select(func.count(func.distinct(FleetResult.store_id)))
        .join(
            latest,
            and_(FleetResult.store_id == latest.c.store_id, FleetResult.finished_at == latest.c.at),
        )
        .join(Store, Store.id == FleetResult.store_id)
        .where(
            tried,
            active,
            FleetResult.status.in_((TenantOutcome.FAILED, TenantOutcome.REFUSED)),
        )
    )
    return FleetCounts(per_revision, lagging, int(failed or 0))


def _latest_tried() -> tuple[ColumnElement[bool], Subquery]:
    """Each tenant's latest outcome time, skipped outcomes left out: a tenant a cancelled run
    skipped was not touched, so its latest outcome is the one before."""
    tried = FleetResult.status != TenantOutcome.SKIPPED
    latest = (
        select(FleetResult.store_id, func.max(FleetResult.finished_at).label("at"))
        .where(tried)
        .group_by(FleetResult.store_id)
        .subquery()
    )
    return tried, latest
