"""The backup scheduler's tick: every due backup and restore test, then pruning.

Several workers may tick (every minute): the lock ``backup-scheduler`` in ``operation_locks``
(through the operation kit, a lease renewed after each backup) lets one of them work at a time;
the others skip. What is due is decided by :mod:`tenantry.services.backups.scheduling`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from tenantry.backup.storage import Storage
from tenantry.crypto import SecretBox
from tenantry.db.master.models import Backup
from tenantry.errors import TenantryError
from tenantry.operations import backup_prune
from tenantry.operations.backup_take import take_backup
from tenantry.operations.backup_verify import verify_backup
from tenantry.operations.kit import OperationKit
from tenantry.operations.running import error_message
from tenantry.services import audit
from tenantry.services.backups import retention
from tenantry.services.backups.scheduling import all_scopes, protection
from tenantry.services.backups.taking import error_text
from tenantry.services.backups.targets import BackupTarget, resolve, scope_of, scratch_server
from tenantry.settings import Settings

#: The scheduler's lock: one tick at a time across every worker.
LOCK = "backup-scheduler"


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
    # A tick runs backups that take minutes between two renewals: a long lease.
    ttl = max(settings.job_lease_seconds * 10, 600)
    kit = OperationKit(sessions, lease_seconds=ttl)
    with kit.lock_if_free(LOCK) as mine:
        if not mine:
            report.skipped = "another scheduler is running"
            return report
        with sessions() as session:
            states = protection(session, all_scopes(session, box, settings), now)
        for state in states:
            if state.backup_due:
                _backup(sessions, storage, settings, box, state.scope, report, say)
                kit.renew_lock(LOCK)
        with sessions() as session:
            states = protection(session, [s.scope for s in states], now)
        for state in states:
            if state.verify_due and state.last_good is not None:
                _verify(sessions, storage, settings, box, state.last_good, report, say)
                kit.renew_lock(LOCK)
        with sessions() as session:
            decisions = retention.plan_prune(session, now=now)
        report.pruned = backup_prune.prune(sessions, storage, decisions)
        for backup_id in report.pruned:
            say(f"pruned {backup_id}")
        if report.pruned:
            with sessions.begin() as session:
                audit.record(
                    session,
                    actor=audit.SCHEDULER,
                    action="backup.pruned",
                    target_type="backup",
                    details={"backups": [str(i) for i in report.pruned]},
                )
    return report


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
            actor=audit.SCHEDULER,
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
        result = verify_backup(sessions, storage, backup.id, server, actor=audit.SCHEDULER)
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
    return error_message(exc)
