"""Asking for a backup: record it (catalog row and operation, audited), then hand it over.

As for provisioning, the backup is committed in master before any dispatcher hears of it, so
a worker never looks for a backup that is not there yet. What ``POST /backups`` and the
console's "Back up now" share.
"""

from __future__ import annotations

from tenantry.backup.storage import Storage
from tenantry.db.master.models import Backup
from tenantry.operations.dispatch import Dispatcher
from tenantry.runtime import Platform
from tenantry.services import audit
from tenantry.services.backups.taking import queue_backup
from tenantry.services.backups.targets import resolve
from tenantry.services.permissions import ensure_may_write


def request(
    platform: Platform,
    dispatcher: Dispatcher,
    storage: Storage,
    scope: str,
    *,
    label: str | None = None,
    pinned: bool = False,
    actor: str,
) -> Backup:
    """Queue a backup of ``scope`` (``master``, ``billing`` or ``store:SLUG``) for the
    workers; the catalog row as recorded (``queued``). A read-only principal is refused
    before anything is recorded."""
    ensure_may_write("back up a database")
    with platform.writer_sessions.begin() as session:
        target = resolve(session, platform.box, platform.settings, scope)
        backup = queue_backup(session, storage, target, label=label, pinned=pinned, actor=actor)
        audit.record(
            session,
            actor=actor,
            action="backup.requested",
            target_type="backup",
            target_id=str(backup.id),
            store_id=target.store_id,
            details={"scope": target.scope},
        )
        session.flush()
        scope_of_target = target.scope
    dispatcher.enqueue_backup(backup.id, scope_of_target)
    return backup
