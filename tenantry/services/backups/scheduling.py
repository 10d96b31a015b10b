"""The backup scheduler: what is due by each database's policy, and how well each is protected.

A database is due for a backup when its policy's cron fired since its last backup attempt
(or it has no good backup at all), and due for a restore test when the verify cron fired
since its newest good backup was last verified. Reading only: the tick that runs what is
due (and holds the scheduler's lock) is :mod:`tenantry.operations.backup_schedule`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db.master.models import (
    GOOD_BACKUP_STATUSES,
    Backup,
    BackupStatus,
    DatabaseStatus,
    IntegrationConfig,
    Store,
)
from tenantry.db.schemas import Role
from tenantry.db.types import utcnow
from tenantry.services.backups.policies import Policy, next_due, policies_for
from tenantry.services.backups.targets import (
    STORE_PREFIX,
    scope_of,
    scratch_problems,
)
from tenantry.settings import Settings

IN_PROGRESS = (BackupStatus.QUEUED, BackupStatus.RUNNING)
#: The most stores one page of the protection status has (``backup status``, ``GET
#: /backups/status``).
STATUS_MAX = 500
#: Past this share of the policy's maximum age, a protected database is shown amber.
AMBER_SHARE = 0.75


@dataclass
class Protection:
    """How well one database is protected now, by its policy."""

    scope: str
    policy: Policy
    last_good: Backup | None
    last_attempt: Backup | None
    last_verified: Backup | None
    now: datetime
    #: Why no backup of the database can be restore-tested (``None``: they can be).
    unverifiable: str | None = None

    @property
    def protected(self) -> bool:
        """A good backup younger than the policy's maximum age exists, and backups of the
        database can be restore-tested (an untestable backup protects no one knows how)."""
        if self.unverifiable is not None or self.last_good is None:
            return False
        return self.last_good.started_at >= self.now - timedelta(hours=self.policy.max_age_hours)

    @property
    def backup_due(self) -> bool:
        """The policy's cron fired since the last attempt (or nothing good exists)."""
        if not self.policy.enabled:
            return False
        last = self.last_attempt or self.last_good
        if last is None:
            return True
        if self.last_good is None and last.status not in IN_PROGRESS:
            return True  # nothing good at all: try at once rather than at the next slot
        return next_due(self.policy.schedule, last.started_at) <= self.now

    @property
    def verify_due(self) -> bool:
        """The newest good backup was never restored and the verify cron fired since."""
        if not self.policy.enabled or self.last_good is None:
            return False
        if self.last_good.verified_at is not None:
            return False
        since = self.last_verified.verified_at if self.last_verified else None
        return since is None or next_due(self.policy.verify_schedule, since) <= self.now

    @property
    def state(self) -> tuple[str, str]:
        """How the database stands against its policy, as a colour named in words and why:
        ``red`` (not protected: no good backup, the newest older than the policy allows, or
        backups that cannot be restore-tested; or its newest restore test failed), ``amber``
        (no restore test ran yet, or the newest good backup is past three quarters of the
        allowed age), ``green`` otherwise."""
        max_h = self.policy.max_age_hours
        if self.last_good is None:
            return "red", "no good backup"
        age_h = (self.now - self.last_good.started_at).total_seconds() / 3600
        if not self.protected:
            if self.unverifiable is not None:
                return "red", f"cannot be restore-tested: {self.unverifiable}"
            return "red", f"newest good backup {age_h:.0f} h old; the policy allows {max_h} h"
        if self.last_verified is not None and self.last_verified.verify_passed is False:
            return "red", "the newest restore test failed"
        if age_h > AMBER_SHARE * max_h:
            return "amber", f"newest good backup {age_h:.0f} h old of {max_h} h allowed"
        if self.last_verified is None:
            return "amber", "no restore test has run yet"
        return "green", f"newest good backup {age_h:.1f} h old of {max_h} h allowed"

    @property
    def rto_met(self) -> bool | None:
        """Whether the last measured restore fitted in the RTO (None: never measured)."""
        if self.last_verified is None or self.last_verified.verify_duration_ms is None:
            return None
        return self.last_verified.verify_duration_ms <= self.policy.rto_minutes * 60_000


def protection(
    session: Session, scopes: list[str], now: datetime | None = None
) -> list[Protection]:
    """The protection of each scope (``master``, ``billing``, ``store:<slug>``)."""
    now = now or utcnow()
    by_scope: dict[str, list[Backup]] = {s: [] for s in scopes}
    query = select(Backup).where(Backup.status != BackupStatus.PRUNED, _of(scopes))
    for backup in session.scalars(query.order_by(Backup.started_at.desc())):
        scope = scope_of(backup)
        if scope in by_scope:
            by_scope[scope].append(backup)
    unverifiable = scratch_problems(session)
    policies = policies_for(session, scopes)
    found = []
    for scope in scopes:
        backups = by_scope[scope]
        good = [b for b in backups if b.status in GOOD_BACKUP_STATUSES]
        verified = [b for b in backups if b.verified_at is not None]
        verified.sort(key=lambda b: b.verified_at or now, reverse=True)
        found.append(
            Protection(
                scope,
                policies[scope],
                good[0] if good else None,
                backups[0] if backups else None,
                verified[0] if verified else None,
                now,
                unverifiable.get(scope),
            )
        )
    return found


#: Above this many stores, :func:`_of` reads every tenant backup instead of listing slugs.
_MANY = 500


def _of(scopes: list[str]) -> ColumnElement[bool]:
    """The backups of ``scopes`` only (a page of stores reads its own backups, not all)."""
    roles = [s for s in scopes if not s.startswith(STORE_PREFIX)]
    slugs = [s.removeprefix(STORE_PREFIX) for s in scopes if s.startswith(STORE_PREFIX)]
    if len(slugs) > _MANY:  # the whole fleet: all tenant backups beats a huge IN list
        return or_(Backup.role.in_(roles), Backup.role == Role.TENANT.value)
    return or_(
        Backup.role.in_(roles), and_(Backup.role == Role.TENANT.value, Backup.slug.in_(slugs))
    )


def scope_page(
    session: Session, *, limit: int, after: str | None = None
) -> tuple[list[str], str | None]:
    """A page of :func:`all_scopes`: master and billing on the first page (``after`` None),
    then up to ``limit`` active stores' scopes in slug order after slug ``after`` (keyset on
    the unique slug); the cursor of the next page (the last slug), None on the last."""
    query = (
        select(Store.slug)
        .join(
            IntegrationConfig,
            and_(IntegrationConfig.store_id == Store.id, IntegrationConfig.is_active.is_(True)),
        )
        .where(Store.database_status == DatabaseStatus.ACTIVE, Store.deleted_at.is_(None))
        .order_by(Store.slug)
        .limit(limit + 1)
    )
    if after is not None:
        query = query.where(Store.slug > after)
    slugs = list(session.scalars(query))
    following = slugs[limit - 1] if len(slugs) > limit else None
    scopes = [f"{STORE_PREFIX}{slug}" for slug in slugs[:limit]]
    return (scopes if after is not None else ["master", "billing", *scopes]), following


def all_scopes(session: Session, box: SecretBox, settings: Settings) -> list[str]:
    """Every database tenantry backs up: master, billing and each active store's (one query
    over master; no store's connection is opened or decrypted: the scheduler resolves only
    the targets that are due)."""
    slugs = session.scalars(
        select(Store.slug)
        .join(
            IntegrationConfig,
            and_(IntegrationConfig.store_id == Store.id, IntegrationConfig.is_active.is_(True)),
        )
        .where(Store.database_status == DatabaseStatus.ACTIVE, Store.deleted_at.is_(None))
        .order_by(Store.slug)
    )
    return ["master", "billing", *(f"{STORE_PREFIX}{slug}" for slug in slugs)]
