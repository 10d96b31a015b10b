"""Migrating one database (master, billing, or a tenant's given by URL), backing it up first,
and recording by hand what became of a migration that failed.

Billing backs up before it migrates unless told otherwise (seed 004: billing is the database
whose loss costs money): a verified, pinned backup is taken before any DDL, and when it fails
nothing is migrated. Migrating billing or a tenant database is an operation (kind ``migrate``)
when master already records operations; master's own migration is not (it may not have the
table yet, and the record would change under the migration).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session, sessionmaker

from tenantry.db import migrations
from tenantry.db.admin import database_exists
from tenantry.db.configured import Target, connection
from tenantry.db.engines import connect, make_engine
from tenantry.db.identity import guard
from tenantry.db.locks import migration_lock
from tenantry.db.master.models import OperationKind
from tenantry.db.schemas import Role
from tenantry.operations import audited, premigration
from tenantry.operations.running import Running, run_here
from tenantry.services import audit, schema_ops
from tenantry.services.backups.targets import BackupTarget
from tenantry.settings import Settings


@dataclass(frozen=True)
class Migrated:
    """The migration's result and the pre-migration backup taken (None when none was)."""

    result: schema_ops.MigrationResult
    backup_id: uuid.UUID | None


def backs_up_first(role: Role, backup_first: bool | None) -> bool:
    """Whether a migration of ``role`` takes a backup first: as asked, else only billing."""
    return role is Role.BILLING if backup_first is None else backup_first


def migrate(
    settings: Settings,
    t: Target,
    *,
    to: str,
    acting_app: str,
    owner: str,
    allow_destructive: bool,
    lock_wait_s: float,
    actor: str,
    backup_first: bool | None = None,
    while_backing_up: AbstractContextManager[object] | None = None,
) -> Migrated:
    """Migrate ``t`` to revision ``to`` under its migration lock after checking its identity;
    with a backup first (see :func:`backs_up_first`), shown by ``while_backing_up``. Audited
    as ``db.migrate`` (succeeded, failed or refused) by ``actor``."""
    backup_id = None
    details: dict[str, Any] = {"role": t.spec.role.value, "to": to}
    try:
        with _recorded(settings, t, acting_app) as running:
            if backs_up_first(t.spec.role, backup_first):
                if running is not None:
                    running.step("backing up")
                backup_id = _backup_before_migrating(
                    settings, t, to, while_backing_up or nullcontext(), actor
                )
            if running is not None:
                running.step("migrating")
            with connection(t, must_exist=False) as conn:
                result = schema_ops.migrate_locked(
                    conn,
                    t.spec,
                    t.shown,
                    target=to,
                    acting_app=acting_app,
                    owner=owner,
                    allow_destructive=allow_destructive,
                    lock_wait_s=lock_wait_s,
                )
    except Exception as exc:
        details["error"] = type(exc).__name__
        outcome = audit.outcome_of(exc)
        audited.without_masking(
            lambda: _audit(settings, t, actor, "db.migrate", details, outcome), "db.migrate"
        )
        raise
    details.update(
        {
            "from": result.from_revision,
            "to": result.to_revision,
            "applied": result.applied,
            "backup_id": str(backup_id) if backup_id else None,
        }
    )
    _audit(settings, t, actor, "db.migrate", details, audit.Outcome.SUCCEEDED)
    return Migrated(result, backup_id)


def _audit(
    settings: Settings,
    t: Target,
    actor: str,
    action: str,
    details: dict[str, Any],
    outcome: audit.Outcome,
    store_id: uuid.UUID | None = None,
) -> None:
    """Write one entry to master's audit log, opening master directly (it may be the database
    just migrated, or not be at head yet). A master without the log's current columns (not
    migrated yet) cannot hold it: nothing is written there."""
    if not database_exists(settings.master_url):
        return
    engine = make_engine(settings.master_url, pool_size=1)
    try:
        with connect(engine) as conn:
            names = inspect(conn)
            if "audit_logs" not in names.get_table_names():
                return
            if "outcome" not in {c["name"] for c in names.get_columns("audit_logs")}:
                return
        with Session(engine) as session, session.begin():
            audit.record(
                session,
                actor=actor,
                actor_app=settings.app,
                action=action,
                target_type=f"{t.spec.role.value}_database",
                target_id=t.shown[:255],
                store_id=store_id,
                details=details,
                outcome=outcome,
            )
    finally:
        engine.dispose()


@contextmanager
def _recorded(settings: Settings, t: Target, acting_app: str) -> Iterator[Running | None]:
    """The migration of ``t`` as an operation in master, or None when it cannot be one (see
    the module): master itself, or a master that does not exist or records no operations."""
    if t.spec.role is Role.MASTER or not database_exists(settings.master_url):
        yield None
        return
    engine = make_engine(settings.master_url, pool_size=2)
    try:
        with connect(engine) as conn:
            records = "operations" in inspect(conn).get_table_names()
        if not records:
            yield None
            return
        with run_here(
            sessionmaker(engine, expire_on_commit=False),
            settings,
            OperationKind.MIGRATE,
            target=f"{t.spec.role} {t.shown}"[:255],
            requested_by=acting_app,
        ) as running:
            yield running
    finally:
        engine.dispose()


def _backup_before_migrating(
    settings: Settings, t: Target, to: str, shown: AbstractContextManager[object], actor: str
) -> uuid.UUID | None:
    """The verified pre-migration backup's id; None when there is nothing to back up (a new
    database) or nothing to apply."""
    with connection(t, must_exist=False) as conn:
        identity = guard(conn, t.spec, where=t.shown)  # the migration's own refusal, first
        current = migrations.current(conn, t.spec)
    goal = migrations.resolve(t.spec, to)
    if identity is None or current == goal:
        return None
    with premigration.standalone(settings, actor) as backups, shown:
        backup = backups.take(BackupTarget(t.spec, t.url), current, goal)
    return backup.id


def resolve(
    settings: Settings,
    t: Target,
    revision: str,
    *,
    applied: bool,
    actor: str,
    store_id: uuid.UUID | None = None,
) -> schema_ops.ResolveResult:
    """Mark failed ``revision`` of ``t`` applied (or rolled back) after it was fixed by hand
    (seed 004's runbook), under the migration lock; then write it to master's audit log."""
    with (
        connection(t) as conn,
        migration_lock(conn, t.spec.role.value, wait_s=30.0),
        conn.begin(),
    ):
        result = schema_ops.resolve(conn, t.spec, t.shown, revision, applied=applied)
    outcome = audit.Outcome.SUCCEEDED
    _audit(settings, t, actor, "migration.resolved", asdict(result), outcome, store_id)
    return result
