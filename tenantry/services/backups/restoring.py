"""Restoring a backup (seed 004's restore script, made safe).

A restore is planned first (which backup, from when, into what, how) and refused when the
target is another role's database, another instance, or a different engine. A live target is
only replaced when the caller repeats its database name, after a pinned safety backup of it.
The backup is restored into a new staging database and checked there; only then does it
replace the target in one step (PostgreSQL: two renames in one transaction; MySQL: one
``RENAME TABLE`` moving every table; SQLite: the online backup API). A failure before the
switch leaves the target exactly as it was.

The plan is :mod:`~tenantry.services.backups.restore_plan`, the staging restore and the
switch per backend :mod:`~tenantry.services.backups.restore_switch`; this module carries a
plan out (safety backup, write block, catalog and counters in master afterwards).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

from tenantry.backup import artifacts
from tenantry.backup.storage import Storage
from tenantry.db.engines import sqlite_path, writer_sessions
from tenantry.db.master.models import Backup, IntegrationConfig, Store
from tenantry.db.schemas import Role, schema_for
from tenantry.db.types import utcnow
from tenantry.db.urls import backend_of
from tenantry.errors import (
    InvalidInput,
)
from tenantry.services import audit
from tenantry.services.backups.restore_plan import RestorePlan
from tenantry.services.backups.restore_switch import restore_and_switch
from tenantry.services.backups.taking import take_backup
from tenantry.services.backups.targets import BackupTarget
from tenantry.services.backups.verification import (
    get_backup,
)
from tenantry.services.counters import StoreCounters, apply_counters
from tenantry.settings import Settings

#: How long a tenant's writes stay blocked at most if a restore dies holding the block.
WRITE_BLOCK_S = 3600


@dataclass
class RestoreResult:
    """What a restore did."""

    backup_id: uuid.UUID
    target: str
    seconds: float
    safety_backup_id: uuid.UUID | None
    row_counts: dict[str, int]


def restore(
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    plan: RestorePlan,
    *,
    confirm: str | None,
    actor: str = "cli",
    on_progress: artifacts.Progress | None = None,
    before_switch: Callable[[], None] | None = None,
) -> RestoreResult:
    """Carry out ``plan``: safety backup, staging restore and check, then the switch.

    ``confirm`` must equal the plan's ``confirm_name`` when the target is live.
    ``before_switch`` runs just before the target is replaced (the CLI closes its own
    connections to master there when master itself is the target).
    """
    if plan.live and confirm != plan.confirm_name:
        raise InvalidInput(
            f"{plan.target_shown} is a live database; restoring replaces all its data. "
            "Nothing was changed.",
            f"Type its name to confirm, or pass --confirm {plan.confirm_name}.",
        )
    with sessions() as session:
        backup = get_backup(session, plan.backup_id)
    started = time.perf_counter()
    safety: Backup | None = None
    if plan.live:
        spec = schema_for(backup.role, settings.tenant_schema)
        safety = take_backup(
            sessions,
            storage,
            BackupTarget(spec, plan.target, backup.store_id, backup.slug, backup.instance_id),
            reason="safety",
            label=f"before restoring {backup.id}",
            pinned=True,
            actor=actor,
            level=settings.backup_zstd_level,
        )
    # Read after the safety backup, so its own catalog row survives a restore of master.
    with sessions() as session:
        catalog = _catalog_rows(session) if plan.backup_role == Role.MASTER else []
    if plan.store_id is not None:
        _block_writes(sessions, plan.store_id, f"restoring backup {backup.id}")
    try:
        counts = restore_and_switch(storage, backup, plan.target, on_progress, before_switch)
    finally:
        if plan.store_id is not None:
            _unblock_writes(sessions, plan.store_id, bump_connection=True)
    with writer_sessions(sessions).begin() as session:
        if catalog:
            _merge_catalog(session, catalog)
        store_id = _store_restored(session, backup, plan)
        if store_id is not None:  # its data changed wholesale: master counts it again
            apply_counters(session, store_id, StoreCounters.from_row_counts(counts))
        audit.record(
            session,
            actor=actor,
            action="backup.restored",
            target_type="database",
            target_id=plan.confirm_name,
            store_id=backup.store_id,
            details={
                "backup": str(backup.id),
                "target": plan.target_shown,
                "in_place": plan.in_place,
                "safety_backup": str(safety.id) if safety else None,
            },
        )
    return RestoreResult(
        backup.id,
        plan.target_shown,
        time.perf_counter() - started,
        safety.id if safety else None,
        counts,
    )


def _store_restored(session: Session, backup: Backup, plan: RestorePlan) -> uuid.UUID | None:
    """The store whose live database the restore replaced: in place, or a ``--target`` that
    is the store's current database under its own URL."""
    if plan.store_id is not None:
        return plan.store_id
    if backup.role != Role.TENANT or backup.store_id is None:
        return None
    config = (
        session.query(IntegrationConfig)
        .filter_by(store_id=backup.store_id, is_active=True)
        .one_or_none()
    )
    if config is None or not _same_database(config.config_data, plan.target):
        return None
    return backup.store_id


def _same_database(config_data: dict[str, Any], url: URL) -> bool:
    path = sqlite_path(url)
    if path is not None:
        stored = config_data.get("path")
        return stored is not None and Path(stored).resolve() == path.resolve()
    stored = (config_data.get("engine"), config_data.get("host"), config_data.get("database"))
    ports = {config_data.get("port"), url.port} - {None}  # a port left out is the default
    return stored == (backend_of(url), url.host, url.database) and len(ports) <= 1


def _block_writes(sessions: sessionmaker[Session], store_id: uuid.UUID, reason: str) -> None:
    with writer_sessions(sessions).begin() as session:
        store = session.get_one(Store, store_id)
        store.write_block_reason = reason
        store.write_block_until = utcnow() + timedelta(seconds=WRITE_BLOCK_S)


def _unblock_writes(
    sessions: sessionmaker[Session], store_id: uuid.UUID, *, bump_connection: bool
) -> None:
    with writer_sessions(sessions).begin() as session:
        store = session.get_one(Store, store_id)
        store.write_block_reason = None
        store.write_block_until = None
        if bump_connection:  # cached engines hold connections to the replaced database
            store.connection_version += 1


def _catalog_rows(session: Session) -> list[dict[str, Any]]:
    columns = [c.key for c in Backup.__table__.columns]
    return [{c: getattr(b, c) for c in columns} for b in session.query(Backup).all()]


def _merge_catalog(session: Session, rows: list[dict[str, Any]]) -> None:
    """Put the catalog back as it was just before master was restored from an older backup.

    Rows the older master lacks are added; rows it has take the state recorded since: the
    restored backup's own row was ``running`` when its dump was taken, and others were
    verified, found corrupt or pruned after it.
    """
    known = {b.id: b for b in session.query(Backup)}
    for row in rows:
        current = known.get(row["id"])
        if current is None:
            session.add(Backup(**row))
            continue
        for column, value in row.items():
            setattr(current, column, value)
