"""Taking a backup, the use case: the catalog row, the artifact, and what is recorded when.

The catalog row (``backups``) is the artifact's record: it outlives the operation that took
it (retention prunes catalog rows, not operation history) and shares that operation's id
(kind ``backup``, see :mod:`tenantry.db.master.models.operations`). It says ``stored`` only
once the artifact was read back from storage with the expected size and hash; a failed,
cancelled or interrupted take removes whatever reached storage and says ``failed`` with the
reason, never counted as a backup.

Everything here works on a session it is given, or returns a statement for the operation to
write (with its progress, in one transaction): :mod:`tenantry.operations.backup_take` owns the
transactions, the lease and the order of the steps.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Update, select, update
from sqlalchemy.orm import Session

from tenantry.backup import artifacts
from tenantry.backup.dump_tools import database_label, engine_for
from tenantry.backup.dump_tools.base import DumpInfo
from tenantry.backup.storage import Storage
from tenantry.db.master.models import (
    GOOD_BACKUP_STATUSES,
    Backup,
    BackupStatus,
    Operation,
    OperationKind,
    OperationStatus,
    ProgressUnit,
)
from tenantry.db.types import utcnow
from tenantry.db.urls import redact
from tenantry.errors import TenantryError
from tenantry.services.backups.manifest import encode, manifest_of
from tenantry.services.backups.targets import BackupTarget
from tenantry.services.operation_rows import new_operation
from tenantry.services.permissions import ensure_may_write

#: The catalog's error for a take its operation stopped on request.
CANCELLED_ERROR = "cancelled on request (tenantry ops cancel) before it was stored; nothing kept."
#: The catalog's error for a take whose process died mid-way (found by the recovery sweep).
STALLED_ERROR = (
    "the process taking this backup stopped before it finished (killed or crashed); what it "
    "had written was removed. Run `tenantry backup run` again to take a new backup."
)


def artifact_key(target: BackupTarget, backup_id: uuid.UUID, when: datetime, ext: str) -> str:
    """Where an artifact goes: ``<scope>/<yyyy>/<mm>/<dd>/<time>-<id>.<ext>.zst``."""
    scope = f"tenants/{target.slug}" if target.slug else target.role
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    return f"{scope}/{when:%Y/%m/%d}/{stamp}-{backup_id.hex[:12]}.{ext}.zst"


def error_text(exc: BaseException, target: BackupTarget | None = None) -> str:
    """What went wrong, for the catalog: a domain message, never a credential."""
    text = exc.message if isinstance(exc, TenantryError) else f"{type(exc).__name__}: {exc}"
    return redact(text)[:4000]


def new_backup(
    session: Session,
    storage: Storage,
    target: BackupTarget,
    *,
    reason: str = "manual",
    label: str | None = None,
    pinned: bool = False,
    actor: str,
) -> Backup:
    """A ``queued`` catalog row for a backup of ``target`` (flushed, not committed), without
    its operation (see :func:`queue_backup`)."""
    ensure_may_write("take a backup")
    started = utcnow()
    backup_id = uuid.uuid4()
    engine = engine_for(target.url)
    key = artifact_key(target, backup_id, started, engine.extension)
    backup = Backup(
        id=backup_id,
        role=target.role,
        store_id=target.store_id,
        slug=target.slug,
        engine=engine.backend,
        database=database_label(target.url),
        status=BackupStatus.QUEUED,
        reason=reason,
        label=label,
        pinned=pinned,
        storage=storage.kind,
        artifact_key=key,
        manifest_key=key + ".manifest.json",
        row_counts={},
        started_at=started,
        created_by=actor,
    )
    session.add(backup)
    session.flush()
    return backup


def queue_backup(
    session: Session,
    storage: Storage,
    target: BackupTarget,
    *,
    reason: str = "manual",
    label: str | None = None,
    pinned: bool = False,
    actor: str,
) -> Backup:
    """A ``queued`` catalog row and its ``backup`` operation (same id), in the caller's
    transaction: a worker (or this process) claims the operation and takes the backup."""
    backup = new_backup(
        session, storage, target, reason=reason, label=label, pinned=pinned, actor=actor
    )
    new_operation(
        session,
        OperationKind.BACKUP,
        id=backup.id,
        store_id=target.store_id,
        target=target.scope,
        requested_by=actor,
        unit=ProgressUnit.BYTES,
    )
    return backup


def started(backup_id: uuid.UUID, instance_id: str | None, revision: str | None) -> Update:
    """The catalog's record of a take that checked its database and starts dumping."""
    return (
        update(Backup)
        .where(Backup.id == backup_id)
        .values(
            status=BackupStatus.RUNNING,
            started_at=utcnow(),
            instance_id=instance_id,
            schema_revision=revision,
        )
    )


def write_artifact(
    storage: Storage,
    target: BackupTarget,
    key: str,
    *,
    level: int,
    on_progress: artifacts.Progress | None = None,
) -> tuple[artifacts.Written, DumpInfo]:
    """Dump ``target`` through zstd into ``storage`` under ``key`` (not yet checked)."""
    with engine_for(target.url).dump(target.url) as (stream, info):
        written = artifacts.write(storage, key, stream, level=level, on_progress=on_progress)
    return written, info


def stored_values(written: artifacts.Written, info: DumpInfo) -> dict[str, Any]:
    """The catalog columns of a take whose artifact was read back and matched."""
    return {
        "size_bytes": written.size_bytes,
        "raw_bytes": written.raw_bytes,
        "sha256": written.sha256,
        "row_counts": info.row_counts,
        "server_version": info.server_version,
        "tool_version": info.tool_version or info.tool,
        "finished_at": utcnow(),
    }


def manifest_bytes(
    session: Session, backup_id: uuid.UUID, values: dict[str, Any], info: DumpInfo, level: int
) -> tuple[str, bytes]:
    """The manifest key and content of the backup once ``values`` are recorded (the session's
    row is left unchanged)."""
    backup = session.get_one(Backup, backup_id)
    session.expunge(backup)  # a copy to describe: nothing of it is written through this session
    for name, value in values.items():
        setattr(backup, name, value)
    manifest = manifest_of(backup, exact_counts=info.exact_counts, level=level)
    return backup.manifest_key, encode(manifest)


def stored(backup_id: uuid.UUID, values: dict[str, Any]) -> Update:
    """The catalog's record of a take that is stored and checked: a backup from now on."""
    return (
        update(Backup)
        .where(Backup.id == backup_id)
        .values(status=BackupStatus.STORED, error=None, **values)
    )


def failed(backup_id: uuid.UUID, error: str) -> Update:
    """The catalog's record of a take that failed (or was stopped): never a backup. A row
    that is already good (or pruned) is left as it is."""
    return (
        update(Backup)
        .where(
            Backup.id == backup_id,
            Backup.status.in_((BackupStatus.QUEUED, BackupStatus.RUNNING, BackupStatus.FAILED)),
        )
        .values(status=BackupStatus.FAILED, error=error[:4000], finished_at=utcnow())
    )


def keys_of(session: Session, backup_id: uuid.UUID) -> tuple[str, str, str] | None:
    """The catalog row's status, artifact key and manifest key (None: no such row)."""
    row = session.execute(
        select(Backup.status, Backup.artifact_key, Backup.manifest_key).where(
            Backup.id == backup_id
        )
    ).one_or_none()
    return None if row is None else (row.status, row.artifact_key, row.manifest_key)


def is_good(status: str) -> bool:
    """Whether a catalog status is a backup that can be restored."""
    return status in GOOD_BACKUP_STATUSES


def discard(storage: Storage, key: str, manifest_key: str | None = None) -> None:
    """Remove what a take wrote to storage (its artifact, manifest and unfinished uploads)."""
    # The failure being reported matters more than the clean-up's.
    for doomed in (key, manifest_key or key + ".manifest.json"):
        with contextlib.suppress(TenantryError):
            storage.delete(doomed)
    with contextlib.suppress(TenantryError):
        storage.delete_unfinished(key)


def settle_orphans(session: Session, backup_id: uuid.UUID | None = None) -> list[uuid.UUID]:
    """Catalog rows still ``queued`` or ``running`` whose operation ended without storing
    them (cancelled while queued, or failed before it could say so): recorded as failed
    (only ``backup_id``'s when given); their ids."""
    query = (
        select(Backup.id, Operation.status, Operation.error)
        .join(Operation, Operation.id == Backup.id)
        .where(
            Backup.status.in_((BackupStatus.QUEUED, BackupStatus.RUNNING)),
            Operation.status.in_((OperationStatus.CANCELLED, OperationStatus.FAILED)),
        )
    )
    if backup_id is not None:
        query = query.where(Backup.id == backup_id)
    orphans = session.execute(query).all()
    for row in orphans:
        reason = CANCELLED_ERROR if row.status == OperationStatus.CANCELLED else row.error
        session.execute(failed(row.id, reason or STALLED_ERROR))
    return [row.id for row in orphans]
