"""How fresh each scope's backups and restore tests are, in aggregate queries for metrics.

Per role: master and billing are one database each; ``tenant`` stands for every active store
and reports the worst of them (the oldest "newest good backup", the oldest "last passed
restore test"), so one number per scope answers "is the RPO missed anywhere". A store with
no good backup at all counts as never backed up (time 0). No backup row is loaded: the
queries group in the database, and only one (store, time) pair per active store comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import Session

from tenantry.db.master.models import (
    GOOD_BACKUP_STATUSES,
    Backup,
    BackupPolicy,
    DatabaseStatus,
    Store,
)
from tenantry.db.schemas import Role
from tenantry.db.types import utcnow
from tenantry.services.backups.policies import policy_for
from tenantry.services.backups.targets import STORE_PREFIX


@dataclass(frozen=True)
class Freshness:
    """One scope (``master``, ``billing``, ``tenant``): Unix times, 0 meaning never."""

    scope: str
    last_success: float
    last_verified_restore: float
    last_restore_test_failed: bool
    max_age_seconds: float


@dataclass(frozen=True)
class BackupFreshness:
    """Every scope's freshness, and the active tenants whose RPO is missed."""

    scopes: list[Freshness]
    tenants_overdue: int


def _ts(when: datetime | None) -> float:
    return when.timestamp() if when is not None else 0.0


def _good_for(role: str) -> ColumnElement[bool]:
    return and_(Backup.role == role, Backup.status.in_(GOOD_BACKUP_STATUSES))


def _single(session: Session, role: str) -> Freshness:
    last_good: datetime | None = session.scalar(
        select(func.max(Backup.started_at)).where(_good_for(role))
    )
    passed: datetime | None = session.scalar(
        select(func.max(Backup.verified_at)).where(
            Backup.role == role, Backup.verify_passed.is_(True)
        )
    )
    newest_test = session.scalar(
        select(Backup.verify_passed.is_(True))
        .where(Backup.role == role, Backup.verified_at.is_not(None))
        .order_by(Backup.verified_at.desc())
        .limit(1)
    )
    policy = policy_for(session, role)
    return Freshness(
        role, _ts(last_good), _ts(passed), newest_test is False, policy.max_age_hours * 3600.0
    )


def _tenants(session: Session, now: datetime) -> tuple[Freshness | None, int]:
    active = (
        select(Store.id, Store.slug)
        .where(Store.database_status == DatabaseStatus.ACTIVE, Store.deleted_at.is_(None))
        .subquery()
    )
    newest_good = (
        select(Backup.store_id, func.max(Backup.started_at).label("at"))
        .where(_good_for(Role.TENANT.value))
        .group_by(Backup.store_id)
        .subquery()
    )
    newest_passed = (
        select(Backup.store_id, func.max(Backup.verified_at).label("at"))
        .where(Backup.role == Role.TENANT.value, Backup.verify_passed.is_(True))
        .group_by(Backup.store_id)
        .subquery()
    )
    rows = session.execute(
        select(active.c.slug, newest_good.c.at, newest_passed.c.at)
        .outerjoin(newest_good, newest_good.c.store_id == active.c.id)
        .outerjoin(newest_passed, newest_passed.c.store_id == active.c.id)
    ).all()
    if not rows:
        return None, 0
    newest_test = (
        select(Backup.store_id, func.max(Backup.verified_at).label("at"))
        .where(Backup.role == Role.TENANT.value, Backup.verified_at.is_not(None))
        .group_by(Backup.store_id)
        .subquery()
    )
    failing = session.scalar(
        select(func.count())
        .select_from(Backup)
        .join(
            newest_test,
            and_(Backup.store_id == newest_test.c.store_id, Backup.verified_at == newest_test.c.at),
        )
        .join(active, active.c.id == Backup.store_id)
        .where(Backup.verify_passed.is_(False))
    )
    tenant = policy_for(session, "tenant")
    # Per-store overrides are few: the rest are held to the tenant policy.
    overrides = {
        scope[len(STORE_PREFIX) :]: hours
        for scope, hours in session.execute(
            select(BackupPolicy.scope, BackupPolicy.max_age_hours).where(
                BackupPolicy.scope.like(f"{STORE_PREFIX}%")
            )
        )
    }
    overdue = sum(
        1
        for slug, good, _ in rows
        if good is None or good < now - timedelta(hours=overrides.get(slug, tenant.max_age_hours))
    )
    freshness = Freshness(
        "tenant",
        min(_ts(good) for _, good, _ in rows),
        min(_ts(passed) for _, _, passed in rows),
        bool(failing),
        tenant.max_age_hours * 3600.0,
    )
    return freshness, overdue


def backup_freshness(session: Session, now: datetime | None = None) -> BackupFreshness:
    """Master's, billing's and the tenants' backup freshness (the tenant scope only when
    there are active tenants)."""
    now = now or utcnow()
    scopes = [_single(session, Role.MASTER.value), _single(session, Role.BILLING.value)]
    tenant, overdue = _tenants(session, now)
    if tenant is not None:
        scopes.append(tenant)
    return BackupFreshness(scopes, overdue)
