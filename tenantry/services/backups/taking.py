"""Taking a backup: dump, compress, hash, store, read back, then record it as good.

The catalog row is written first (``running``) so a crash leaves a trace, and it becomes
``stored`` only after the artifact was read back from storage with the expected size and
hash. A failed dump, upload or read-back deletes whatever reached storage and records the
backup as ``failed`` with the reason; it is never counted as a backup.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from tenantry.backup import artifacts
from tenantry.backup.dump_tools import database_label, engine_for
from tenantry.backup.storage import Storage
from tenantry.db.engines import writer_sessions
from tenantry.db.master.models import Backup, BackupStatus
from tenantry.db.types import utcnow
from tenantry.db.urls import redact
from tenantry.errors import Conflict, TenantryError
from tenantry.failpoints import failpoint
from tenantry.services.backups.manifest import encode, manifest_of
from tenantry.services.backups.targets import BackupTarget, identify


def artifact_key(target: BackupTarget, backup_id: uuid.UUID, when: datetime, ext: str) -> str:
    """Where an artifact goes: ``<scope>/<yyyy>/<mm>/<dd>/<time>-<id>.<ext>.zst``."""
    scope = f"tenants/{target.slug}" if target.slug else target.role
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    return f"{scope}/{when:%Y/%m/%d}/{stamp}-{backup_id.hex[:12]}.{ext}.zst"


def error_text(exc: BaseException, target: BackupTarget) -> str:
    """What went wrong, for the catalog: a domain message, never a credential."""
    text = exc.message if isinstance(exc, TenantryError) else f"{type(exc).__name__}: {exc}"
    return redact(text)[:4000]


def queue_backup(
    session: Session,
    storage: Storage,
    target: BackupTarget,
    *,
    reason: str = "manual",
    label: str | None = None,
    pinned: bool = False,
    actor: str = "api",
) -> Backup:
    """A ``queued`` catalog row for a backup a worker will take (see ``take_backup``)."""
    backup = _new_row(target, storage, uuid.uuid4(), utcnow(), reason, label, pinned, actor)
    backup.status = BackupStatus.QUEUED
    session.add(backup)
    return backup


def _new_row(
    target: BackupTarget,
    storage: Storage,
    backup_id: uuid.UUID,
    started: datetime,
    reason: str,
    label: str | None,
    pinned: bool,
    actor: str,
) -> Backup:
    engine = engine_for(target.url)
    key = artifact_key(target, backup_id, started, engine.extension)
    return Backup(
        id=backup_id,
        role=target.role,
        store_id=target.store_id,
        slug=target.slug,
        engine=engine.backend,
        database=database_label(target.url),
        status=BackupStatus.RUNNING,
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


def take_backup(
    sessions: sessionmaker[Session],
    storage: Storage,
    target: BackupTarget,
    *,
    reason: str = "manual",
    label: str | None = None,
    pinned: bool = False,
    actor: str = "cli",
    level: int = 3,
    on_progress: artifacts.Progress | None = None,
    queued_id: uuid.UUID | None = None,
) -> Backup:
    """Back up ``target`` into ``storage``; the catalog row of the stored backup.

    ``queued_id`` takes the backup that :func:`queue_backup` recorded. Raises the failure
    (after recording the backup as ``failed``) when anything goes wrong.
    """
    writes = writer_sessions(sessions)
    if queued_id is not None:
        _claim(writes, queued_id)
    try:
        identity, revision = identify(target)
    except BaseException as exc:
        if queued_id is not None:  # a claimed row must not stay "running" forever
            _fail(writes, queued_id, exc, target)
        raise
    engine = engine_for(target.url)
    with writes.begin() as session:
        if queued_id is None:
            backup = _new_row(target, storage, uuid.uuid4(), utcnow(), reason, label, pinned, actor)
            session.add(backup)
        else:
            backup = session.get_one(Backup, queued_id)
        backup.instance_id = identity.instance_id
        backup.schema_revision = revision
        backup_id, key = backup.id, backup.artifact_key
    try:
        with engine.dump(target.url) as (stream, info):
            written = artifacts.write(storage, key, stream, level=level, on_progress=on_progress)
        failpoint("backup.written")
        # Good only once what storage holds is read back and matches what was sent.
        artifacts.check(storage, key, size=written.size_bytes, sha256=written.sha256)
        with writes.begin() as session:
            backup = session.get_one(Backup, backup_id)
            backup.size_bytes = written.size_bytes
            backup.raw_bytes = written.raw_bytes
            backup.sha256 = written.sha256
            backup.row_counts = info.row_counts
            backup.server_version = info.server_version
            backup.tool_version = info.tool_version or info.tool
            backup.finished_at = utcnow()
            manifest = manifest_of(backup, exact_counts=info.exact_counts, level=level)
            storage.put_bytes(backup.manifest_key, encode(manifest))
            backup.status = BackupStatus.STORED
    except BaseException as exc:
        _discard(storage, key)
        _fail(writes, backup_id, exc, target)
        raise
    with sessions() as session:
        return session.get_one(Backup, backup_id)


def _claim(writes: sessionmaker[Session], backup_id: uuid.UUID) -> None:
    """Take a queued backup; of two workers handed the same one, only one wins."""
    with writes.begin() as session:
        claimed = (
            session.connection()
            .execute(
                update(Backup)
                .where(Backup.id == backup_id, Backup.status == BackupStatus.QUEUED)
                .values(status=BackupStatus.RUNNING, started_at=utcnow())
            )
            .rowcount
        )
    if claimed != 1:
        raise Conflict(f"backup {backup_id} is no longer queued; another worker took it.")


def _fail(
    writes: sessionmaker[Session], backup_id: uuid.UUID, exc: BaseException, target: BackupTarget
) -> None:
    with writes.begin() as session:
        failed = session.get_one(Backup, backup_id)
        failed.status = BackupStatus.FAILED
        failed.error = error_text(exc, target)
        failed.finished_at = utcnow()


def _discard(storage: Storage, key: str) -> None:
    # The failure being reported matters more than the clean-up's.
    for doomed in (key, key + ".manifest.json"):
        with contextlib.suppress(TenantryError):
            storage.delete(doomed)
