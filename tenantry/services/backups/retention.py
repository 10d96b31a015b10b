"""Retention: which backups to delete, decided from the catalog's times, never file dates.

Per database, the good backups are walked newest first. Kept: pinned ones, the newest
verified one (or the newest good one when none is verified yet), the newest ``min_keep``,
and any younger than ``retention_days``. A database whose latest backup attempt failed is
left alone entirely: nothing is pruned until a backup succeeds again.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantry.backup.storage import Storage
from tenantry.db.master.models import GOOD_BACKUP_STATUSES, Backup, BackupStatus
from tenantry.db.types import utcnow
from tenantry.errors import TenantryError
from tenantry.services.backups.policies import policy_for
from tenantry.services.backups.targets import scope_of


@dataclass(frozen=True)
class Decision:
    """Whether one backup is kept or pruned, and why."""

    backup_id: uuid.UUID
    scope: str
    started_at: datetime
    prune: bool
    why: str


def plan_prune(session: Session, *, now: datetime | None = None) -> list[Decision]:
    """Keep-or-prune decisions for every good backup in the catalog (changes nothing)."""
    now = now or utcnow()
    attempts: dict[str, list[Backup]] = defaultdict(list)
    query = select(Backup).where(Backup.status != BackupStatus.PRUNED)
    for backup in session.scalars(query.order_by(Backup.started_at.desc())):
        attempts[scope_of(backup)].append(backup)
    decisions: list[Decision] = []
    for scope, backups in sorted(attempts.items()):
        policy = policy_for(session, scope)
        good = [b for b in backups if b.status in GOOD_BACKUP_STATUSES]
        finished = [
            b for b in backups if b.status not in (BackupStatus.QUEUED, BackupStatus.RUNNING)
        ]
        if finished and finished[0].status == BackupStatus.FAILED:
            decisions += [
                Decision(b.id, scope, b.started_at, False, "latest backup failed: nothing pruned")
                for b in good
            ]
            continue
        verified = [b for b in good if b.status == BackupStatus.VERIFIED]
        anchor = (verified or good)[0] if good else None
        cutoff = now - timedelta(days=policy.retention_days)
        for index, backup in enumerate(good):
            if backup.pinned:
                keep, why = True, f"pinned ({backup.label or backup.reason})"
            elif backup is anchor:
                keep, why = True, "newest verified" if verified else "newest good backup"
            elif index < policy.min_keep:
                keep, why = True, f"among the {policy.min_keep} newest"
            elif backup.started_at >= cutoff:
                keep, why = True, f"within {policy.retention_days} days"
            else:
                keep, why = False, f"older than {policy.retention_days} days"
            decisions.append(Decision(backup.id, scope, backup.started_at, not keep, why))
    return decisions


def prune_one(session: Session, storage: Storage, decision: Decision) -> bool:
    """Delete the artifact of one backup ``decision`` marks ``prune``, in the caller's
    transaction; whether it was pruned (not when it changed since the plan was made)."""
    if not decision.prune:
        return False
    backup = session.get_one(Backup, decision.backup_id)
    if backup.pinned or backup.status not in GOOD_BACKUP_STATUSES:
        return False  # changed since the plan was made
    if backup.storage != storage.kind:
        return False  # kept where this installation's storage cannot reach it
    # The manifest goes last: an artifact without a manifest would be unexplained.
    storage.delete(backup.artifact_key)
    with contextlib.suppress(TenantryError):
        storage.delete(backup.manifest_key)
    backup.status = BackupStatus.PRUNED
    return True
