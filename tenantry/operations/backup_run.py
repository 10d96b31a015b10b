"""``backup run``: back up each database asked for, and (``--verify``) test-restore each backup.

A take (:mod:`.backup_take`) and, when asked, a restore test (:mod:`.backup_verify`) per
database, each an operation of its own; one database's failure is that database's outcome
only, the others are still attempted.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from tenantry.backup.artifacts import Progress
from tenantry.backup.storage import Storage
from tenantry.db.master.models import Backup
from tenantry.errors import TenantryError
from tenantry.operations.backup_take import take_backup
from tenantry.operations.backup_verify import verify_backup
from tenantry.runtime import Platform
from tenantry.services.backups import catalog
from tenantry.services.backups.taking import error_text
from tenantry.services.backups.targets import BackupTarget, scratch_server
from tenantry.services.backups.verification import get_backup

#: Progress shown for one streaming step, given what it does (``backing up master``).
ShowBytes = Callable[[str], AbstractContextManager[Progress]]


@dataclass
class Outcome:
    """One database's part of ``backup run``: its backup, and its restore test if asked."""

    scope: str
    backup: Backup | None = None
    error: str | None = None
    hint: str | None = None
    verification: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Backed up, and (when asked) verified."""
        if self.backup is None:
            return False
        return self.verification is None or self.verification["passed"] is True

    def document(self, storage: Storage) -> dict[str, Any]:
        """As JSON: the catalog entry (or the failure), with the verification's outcome."""
        if self.backup is None:
            return {"scope": self.scope, "status": "failed", "error": self.error, "hint": self.hint}
        doc = catalog.backup_document(self.backup, storage)
        if self.verification is not None:
            doc["verification"] = self.verification
        return doc


def failure(exc: Exception, target: BackupTarget) -> tuple[str, str | None]:
    """What went wrong and what to do, never a credential (any exception, not only ours)."""
    if isinstance(exc, TenantryError):
        return exc.message, exc.hint
    return error_text(exc, target), "See the message above; the other databases were attempted."


def verify_one(
    platform: Platform, storage: Storage, backup: Backup, show: ShowBytes, *, actor: str
) -> Any:
    """Test-restore ``backup`` on its scratch server (an operation of its own)."""
    with platform.sessions() as session:
        server = scratch_server(session, platform.box, platform.settings, backup)
    with show(f"restoring {catalog.short(backup.id)} into a scratch database") as advance:
        return verify_backup(
            platform.sessions,
            storage,
            backup.id,
            server,
            on_progress=advance,
            lease_seconds=platform.settings.job_lease_seconds,
            actor=actor,
        )


def back_up_one(
    platform: Platform,
    storage: Storage,
    target: BackupTarget,
    *,
    label: str | None,
    pin: bool,
    verify: bool,
    show: ShowBytes,
    actor: str,
) -> Outcome:
    """Back up (and verify) one database; any failure is this database's outcome only."""
    outcome = Outcome(target.scope)
    try:
        with show(f"backing up {target.scope}") as advance:
            outcome.backup = take_backup(
                platform.sessions,
                storage,
                target,
                label=label,
                pinned=pin,
                level=platform.settings.backup_zstd_level,
                on_progress=advance,
                lease_seconds=platform.settings.job_lease_seconds,
                actor=actor,
            )
    except Exception as exc:
        outcome.error, outcome.hint = failure(exc, target)
        return outcome
    if not verify:
        return outcome
    try:
        result = verify_one(platform, storage, outcome.backup, show, actor=actor)
        outcome.verification = {
            "passed": result.passed,
            "restore_seconds": round(result.restore_seconds, 3),
            "problems": result.problems,
            "notes": result.notes,
        }
    except Exception as exc:
        message, hint = failure(exc, target)
        outcome.verification = {"passed": None, "error": message, "hint": hint}
    with platform.sessions() as session:
        outcome.backup = get_backup(session, outcome.backup.id)
    return outcome
