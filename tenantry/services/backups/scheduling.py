"""The backup scheduler: what is due by each database's policy, and running it.

A database is due for a backup when its policy's cron fired since its last backup attempt
(or it has no good backup at all), and due for a restore test when the verify cron fired
since its newest good backup was last verified. Each tick then prunes, but only the
databases whose latest attempt succeeded. Several workers may tick: a lease in
``fleet_locks`` lets one of them work at a time.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tenantry.backup.storage import Storage
from tenantry.crypto import SecretBox
from tenantry.db.master.models import GOOD_BACKUP_STATUSES, Backup, BackupStatus
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, TenantryError
from tenantry.services.backups import retention
from tenantry.services.backups.policies import Policy, next_due, policy_for
from tenantry.services.backups.taking import error_text, take_backup
from tenantry.services.backups.targets import (
    BackupTarget,
    resolve,
    scope_of,
    scratch_server,
    tenant_targets,
)
from tenantry.services.backups.verification import verify_backup
from tenantry.services.fleet import acquire_lock, release_lock, renew_lock
from tenantry.settings import Settings

LOCK_ROLE = "backup-scheduler"
IN_PROGRESS = (BackupStatus.QUEUED, BackupStatus.RUNNING)


@dataclass
class Protection:
    """How well one database is protected now, by its policy."""

    scope: str
    policy: Policy
    last_good: Backup | None
    last_attempt: Backup | None
    last_verified: Backup | None
    now: datetime

    @property
    def protected(self) -> bool:
        """A good backup younger than the policy's maximum age exists."""
        return self.last_good is not None and self.last_good.started_at >= self.now - timedelta(
            hours=self.policy.max_age_hours
        )

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
    query = select(Backup).where(Backup.status != BackupStatus.PRUNED)
    for backup in session.scalars(query.order_by(Backup.started_at.desc())):
        scope = scope_of(backup)
        if scope in by_scope:
            by_scope[scope].append(backup)
    found = []
    for scope in scopes:
        backups = by_scope[scope]
        good = [b for b in backups if b.status in GOOD_BACKUP_STATUSES]
        verified = [b for b in backups if b.verified_at is not None]
        verified.sort(key=lambda b: b.verified_at or now, reverse=True)
        found.append(
            Protection(
                scope,
                policy_for(session, scope),
                good[0] if good else None,
                backups[0] if backups else None,
                verified[0] if verified else None,
                now,
            )
        )
    return found


def all_scopes(session: Session, box: SecretBox, settings: Settings) -> list[str]:
    """Every database tenantry backs up: master, billing and each active store's."""
    return ["master", "billing", *(t.scope for t in tenant_targets(session, box, settings))]


@dataclass
class TickReport:
    """What one scheduler tick did."""

    backed_up: list[uuid.UUID] = field(default_factory=list)
    verified: list[uuid.UUID] = field(default_factory=list)
    pruned: list[uuid.UUID] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    skipped: str | None = None


Event = Callable[[str], None]


def tick(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    box: SecretBox,
    *,
    now: datetime | None = None,
    on_event: Event | None = None,
) -> TickReport:
    """Run every due backup and restore test, then prune; one failure never stops the rest."""
    report = TickReport()
    say = on_event or (lambda _message: None)
    tick_id = uuid.uuid4()
    ttl = timedelta(seconds=max(settings.job_lease_seconds * 10, 600))
    with sessions() as session:
        try:
            acquire_lock(session, LOCK_ROLE, tick_id, ttl)
        except Conflict:
            report.skipped = "another scheduler is running"
            return report
    try:
        with sessions() as session:
            states = protection(session, all_scopes(session, box, settings), now)
        for state in states:
            if state.backup_due:
                _backup(sessions, storage, settings, box, state.scope, report, say)
                _renew(sessions, tick_id, ttl)
        with sessions() as session:
            states = protection(session, [s.scope for s in states], now)
        for state in states:
            if state.verify_due and state.last_good is not None:
                _verify(sessions, storage, settings, box, state.last_good, report, say)
                _renew(sessions, tick_id, ttl)
        with sessions() as session:
            decisions = retention.plan_prune(session, now=now)
        report.pruned = retention.prune(sessions, storage, decisions)
        for backup_id in report.pruned:
            say(f"pruned {backup_id}")
    finally:
        with sessions() as session:
            release_lock(session, LOCK_ROLE, tick_id)
    return report


def _renew(sessions: sessionmaker[Session], tick_id: uuid.UUID, ttl: timedelta) -> None:
    with sessions() as session:
        renew_lock(session, LOCK_ROLE, tick_id, ttl)


def _backup(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    box: SecretBox,
    scope: str,
    report: TickReport,
    say: Event,
) -> None:
    target: BackupTarget | None = None
    try:
        with sessions() as session:
            target = resolve(session, box, settings, scope)
        backup = take_backup(
            sessions,
            storage,
            target,
            reason="scheduled",
            actor="scheduler",
            level=settings.backup_zstd_level,
        )
    except Exception as exc:  # any failure is this database's; the tick goes on
        message = exc.message if isinstance(exc, TenantryError) else _unexpected(exc, target)
        report.failures.append(f"backup of {scope}: {message}")
        say(f"backup of {scope} failed: {message}")
        return
    report.backed_up.append(backup.id)
    say(f"backed up {scope}: {backup.id}")


def _verify(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    box: SecretBox,
    backup: Backup,
    report: TickReport,
    say: Event,
) -> None:
    try:
        with sessions() as session:
            server = scratch_server(session, box, settings, backup)
        result = verify_backup(sessions, storage, backup.id, server)
    except Exception as exc:  # verify_backup turns the unexpected into VerificationNotRun
        message = exc.message if isinstance(exc, TenantryError) else _unexpected(exc, None)
        report.failures.append(f"verification of {backup.id}: {message}")
        say(f"verification of {backup.id} failed: {message}")
        return
    report.verified.append(backup.id)
    outcome = "passed" if result.passed else "FAILED: " + "; ".join(result.problems)
    notes = f" ({'; '.join(result.notes)})" if result.notes else ""
    say(f"verified {backup.id} ({scope_of(backup)}): {outcome}{notes}")


def _unexpected(exc: Exception, target: BackupTarget | None) -> str:
    """An exception that is not tenantry's own, in one line without credentials."""
    if target is not None:
        return error_text(exc, target)
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}".rstrip(": ")
