"""Restoring into a staging database next to the target, checking it there, then replacing
the target in one step (:func:`tenantry.db.database_swap.swap_in`: PostgreSQL two renames in
one transaction, MySQL one ``RENAME TABLE`` moving every table, SQLite the online backup
API)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.engine import URL

from tenantry.backup import artifacts
from tenantry.backup.storage import Storage
from tenantry.db.admin import create_database, drop_database
from tenantry.db.database_swap import swap_in
from tenantry.db.engines import sqlite_path
from tenantry.db.master.models import Backup
from tenantry.db.urls import mask, redact
from tenantry.errors import Conflict, TenantryError
from tenantry.failpoints import failpoint
from tenantry.services.backups.verification import check_restored, restore_artifact

T = TypeVar("T")


def restore_and_switch(
    storage: Storage,
    backup: Backup,
    target: URL,
    on_progress: artifacts.Progress | None,
    before_switch: Callable[[], None] | None,
) -> dict[str, int]:
    """Restore ``backup`` into a new staging database next to ``target``, check it, then
    replace ``target`` with it in one step; the row counts of the restored copy. The staging
    database is always dropped; a failure before the switch leaves ``target`` as it was."""
    staging = staging_url(target, backup.id)

    def stage() -> dict[str, int]:
        restore_artifact(storage, backup, staging, on_progress)
        return checked_counts(backup, staging, "The target was not touched.")

    drop_database(staging)
    create_database(staging)
    try:
        counts = staged(stage, before_switch, backup.id, target)
        swap_in(staging, target)
    finally:
        drop_database(staging)
    return counts


def checked_counts(backup: Backup, restored: URL, untouched: str) -> dict[str, int]:
    """The row counts of ``backup`` restored at ``restored``, once it passed its checks; a
    :class:`Conflict` naming the problems otherwise (``untouched`` says what was kept)."""
    problems, _notes, counts = check_restored(backup, restored)
    if problems:
        raise Conflict(
            f"the restored copy of backup {backup.id} failed its checks: "
            f"{'; '.join(problems)}. {untouched}",
            "Verify the backup (`tenantry backup verify`) and choose another one.",
        )
    return counts


def staged(
    stage: Callable[[], T],
    before_switch: Callable[[], None] | None,
    backup_id: uuid.UUID,
    target: URL,
) -> T:
    """``stage()``'s result once it and ``before_switch`` ran: everything a restore does
    before its switch. An error that is not one of tenantry's own (a driver's, a tool's)
    becomes :class:`RestoreFailed`, saying the target was kept."""
    try:
        result = stage()
        failpoint("restore.before_switch")
        if before_switch is not None:
            before_switch()
    except TenantryError:
        raise
    except Exception as exc:
        raise RestoreFailed.before_switch(exc, backup_id, target) from exc
    return result


class RestoreFailed(TenantryError):
    """A restore stopped before its switch (the target is as it was)."""

    @classmethod
    def before_switch(cls, exc: Exception, backup_id: uuid.UUID, target: URL) -> RestoreFailed:
        """``exc`` (not one of tenantry's own errors) as one line saying what was kept."""
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {first[0] if first else ''}".rstrip(": ")
        return cls(
            f"restoring backup {backup_id} into {mask(target)} failed before the switch: "
            f"{redact(reason)}. The target was not changed; the staging copy is dropped.",
            "Fix the cause, then run the restore again.",
        )


def staging_url(target: URL, backup_id: uuid.UUID) -> URL:
    """Where backup ``backup_id`` is restored before it replaces ``target``."""
    suffix = f"_restoring_{backup_id.hex[:8]}"
    path = sqlite_path(target)
    if path is not None:
        return target.set(database=str(path.with_name(f".{path.stem}{suffix}.db")))
    name = str(target.database)
    return target.set(database=name[: 63 - len(suffix)] + suffix)
