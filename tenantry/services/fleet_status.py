"""The fleet as master records it: tenants per revision, lagging and failed tenants, runs.

Read-only, from master alone (no tenant database is opened): ``fleet status`` (CLI, HTTP,
console) and the followers of a queued run read here. The counts are always whole (aggregate
queries); the stores needing attention (lagging or failed) come a page at a time, keyset-paged
on the store's slug (unique, so indexed): a page costs the same at 100 or 10,000 stores.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, Subquery, and_, func, or_, select
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
from tenantry.errors import InvalidInput, NotFound

#: Stores needing attention listed per page unless asked otherwise, and at most.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
#: The longest cursor (a store slug) accepted.
CURSOR_MAX = 63


@dataclass(frozen=True)
class FleetStatus:
    """The fleet as master records it: whole counts, and one page of the stores needing
    attention (lagging or failed), in slug order after ``cursor``."""

    head: str | None
    total: int
    per_revision: dict[str, int]
    lagging: list[str]  # this page's slugs not at head
    failed: list[dict[str, Any]]  # this page's latest outcome failed or refused: slug, error, when
    last_run: dict[str, Any] | None
    lagging_total: int = 0  # every store not at head
    failed_total: int = 0  # every store whose latest outcome failed or was refused
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    next_cursor: str | None = None  # the next page's cursor; None on the last page


def check_page(
    limit: int, cursor: str | None, *, most: int = MAX_LIMIT, listing: str = "fleet status"
) -> None:
    """``limit`` 1 to ``most``; ``cursor`` a slug a previous page of ``listing`` returned."""
    if not 1 <= limit <= most:
        raise InvalidInput(
            f"limit {limit} is out of range.",
            f"Give 1 to {most} stores per page; walk the rest with the next cursor.",
        )
    if cursor is not None and not 0 < len(cursor) <= CURSOR_MAX:
        raise InvalidInput(
            f"cursor is not one {listing} returned.",
            "Pass next_cursor of the previous page (a store slug), or leave it out.",
        )


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


def fleet_status(
    session: Session,
    spec: SchemaSpec,
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> FleetStatus:
    """Whole counts and one page of the stores needing attention, from master only (no
    tenant database is opened): at most ``limit`` stores after slug ``cursor`` that are not
    at head or whose latest migration failed (``next_cursor`` asks for the next page)."""
    check_page(limit, cursor)
    head = migrations.head(spec)
    counts = fleet_counts(session, spec)
    query = _attention(head).order_by(Store.slug).limit(limit + 1)
    if cursor is not None:
        query = query.where(Store.slug > cursor)
    rows = session.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    failures = _failures(session, [r.id for r in rows if r.failed])
    failed = [failures[r.id] for r in rows if r.id in failures]
    run = session.scalar(select(FleetRun).order_by(FleetRun.created_at.desc()).limit(1))
    return FleetStatus(
        head,
        sum(counts.per_revision.values()),
        counts.per_revision,
        [r.slug for r in rows if r.schema_revision != head],
        failed,
        run_summary(run) if run is not None else None,
        lagging_total=counts.lagging,
        failed_total=counts.failed,
        limit=limit,
        cursor=cursor,
        next_cursor=rows[-1].slug if more and rows else None,
    )


def _active() -> ColumnElement[bool]:
    return and_(Store.database_status == DatabaseStatus.ACTIVE, Store.deleted_at.is_(None))


def _failed_ids() -> Select[uuid.UUID]:
    """The stores whose latest tried outcome failed or was refused."""
    tried, latest = _latest_tried()
    return (
        select(FleetResult.store_id)
        .join(
            latest,
            and_(FleetResult.store_id == latest.c.store_id, FleetResult.finished_at == latest.c.at),
        )
        .where(tried, FleetResult.status.in_((TenantOutcome.FAILED, TenantOutcome.REFUSED)))
    )


def _attention(head: str | None) -> Select[uuid.UUID, str, str | None, bool]:
    """Active stores not at ``head`` or whose latest migration failed (id, slug, revision,
    whether it failed)."""
    failed = Store.id.in_(_failed_ids())
    behind: ColumnElement[bool] = Store.schema_revision.is_not(None)
    if head is not None:
        behind = or_(Store.schema_revision.is_(None), Store.schema_revision != head)
    return select(Store.id, Store.slug, Store.schema_revision, failed.label("failed")).where(
        _active(), or_(behind, failed)
    )


def _failures(session: Session, store_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    """The latest failed outcome of each of ``store_ids`` (a page's: bounded)."""
    if not store_ids:
        return {}
    tried, latest = _latest_tried(store_ids)
    results = session.scalars(
        select(FleetResult)
        .join(
            latest,
            and_(FleetResult.store_id == latest.c.store_id, FleetResult.finished_at == latest.c.at),
        )
        .where(tried, FleetResult.status.in_((TenantOutcome.FAILED, TenantOutcome.REFUSED)))
    )
    return {
        r.store_id: {"slug": r.slug, "status": r.status, "error": r.error, "at": r.finished_at}
        for r in results
    }


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
    active = _active()
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


def _latest_tried(
    store_ids: list[uuid.UUID] | None = None,
) -> tuple[ColumnElement[bool], Subquery]:
    """Each tenant's latest outcome time (only ``store_ids``' when given), skipped outcomes
    left out: a tenant a cancelled run skipped was not touched, so its latest outcome is the
    one before."""
    tried = FleetResult.status != TenantOutcome.SKIPPED
    query = select(FleetResult.store_id, func.max(FleetResult.finished_at).label("at")).where(tried)
    if store_ids is not None:
        query = query.where(FleetResult.store_id.in_(store_ids))
    return tried, query.group_by(FleetResult.store_id).subquery()
