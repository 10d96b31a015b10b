"""Restoring a backup (seed 004's restore script, made safe).

A restore is planned first (which backup, from when, into what, how) and refused when the
target is another role's database, another instance, or a different engine. A live target is
only replaced when the caller repeats its database name, after a pinned safety backup of it.
The backup is restored into a new staging database and checked there; only then does it
replace the target in one step (PostgreSQL: two renames in one transaction; MySQL: one
``RENAME TABLE`` moving every table; SQLite: the online backup API). A failure before the
switch leaves the target exactly as it was.

The plan is :mod:`~tenantry.services.backups.restore_plan`, the staging restore and the
switch per backend :mod:`~tenantry.services.backups.restore_switch`; this module holds what a
restore does in master, on the caller's session (the ``restore`` operation,
:mod:`tenantry.operations.restore`, carries a plan out and owns the transactions).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.db.engines import sqlite_path
from tenantry.db.master.models import Backup, IntegrationConfig
from tenantry.db.schemas import Role, schema_for
from tenantry.db.urls import backend_of
from tenantry.errors import (
    InvalidInput,
)
from tenantry.services import audit
from tenantry.services.backups.restore_plan import RestorePlan
from tenantry.services.backups.targets import BackupTarget
from tenantry.services.counters import StoreCounters, apply_counters
from tenantry.settings import Settings


@dataclass
class RestoreResult:
    """What a restore did."""

    backup_id: uuid.UUID
    target: str
    seconds: float
    safety_backup_id: uuid.UUID | None
    row_counts: dict[str, int]
    #: The ``restore`` operation that ran it.
    operation_id: uuid.UUID | None = None


def block_reason(backup_id: uuid.UUID, operation_id: uuid.UUID) -> str:
    """The write-block reason a restore sets on its store (and recognises as its own)."""
    return f"restoring backup {backup_id} (operation {operation_id})"


def check_confirm(plan: RestorePlan, confirm: str | None) -> None:
    """Refuse to replace a live target unless ``confirm`` repeats its name."""
    if plan.live and confirm != plan.confirm_name:
        raise InvalidInput(
            f"{plan.target_shown} is a live database; restoring replaces all its data. "
            "Nothing was changed.",
            f"Type its name to confirm, or pass --confirm {plan.confirm_name}.",
        )


def safety_target(settings: Settings, backup: Backup, plan: RestorePlan) -> BackupTarget:
    """What the pinned safety backup of a live target is taken of."""
    spec = schema_for(backup.role, settings.tenant_schema)
    return BackupTarget(spec, plan.target, backup.store_id, backup.slug, backup.instance_id)


def catalog_rows(session: Session, backup: Backup) -> list[dict[str, Any]]:
    """The backups catalog as it is now, when restoring master (to put back afterwards);
    nothing for another role."""
    if backup.role != Role.MASTER:
        return []
    columns = [c.key for c in Backup.__table__.columns]
    return [{c: getattr(b, c) for c in columns} for b in session.query(Backup).all()]


def record_restored(
    session: Session,
    backup: Backup,
    plan: RestorePlan,
    counts: dict[str, int],
    *,
    catalog: list[dict[str, Any]],
    safety_id: uuid.UUID | None,
    actor: str,
) -> None:
    """Master after a restore, in the caller's transaction: the catalog put back (master
    restored), the restored store's counters taken from its new data, the audit entry."""
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
            "safety_backup": str(safety_id) if safety_id else None,
        },
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
