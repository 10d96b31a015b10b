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
from tenantry.operations import premigration
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
    backup_first: bool | None = None,
    while_backing_up: AbstractContextManager[object] | None = None,
) -> Migrated:
    """Migrate ``t`` to revision ``to`` under its migration lock after checking its identity;
    with a backup first (see :func:`backs_up_first`), shown by ``while_backing_up``."""
    backup_id = None
    with _recorded(settings, t, acting_app) as running:
        if backs_up_first(t.spec.role, backup_first):
            if running is not None:
                running.step("backing up")
            backup_id = _backup_before_migrating(settings, t, to, while_backing_up or nullcontext())
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
    return Migrated(result, backup_id)


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
    settings: Settings, t: Target, to: str, shown: AbstractContextManager[object]
) -> uuid.UUID | None:
    """The verified pre-migration backup's id; None when there is nothing to back up (a new
    database) or nothing to apply."""
    with connection(t, must_exist=False) as conn:
        identity = guard(conn, t.spec, where=t.shown)  # the migration's own refusal, first
        current = migrations.current(conn, t.spec)
    goal = migrations.resolve(t.spec, to)
    if identity is None or current == goal:
        return None
    with premigration.standalone(settings) as backups, shown:
        backup = backups.take(BackupTarget(t.spec, t.url), current, goal)
    return backup.id


def resolve(
    settings: Settings,
    t: Target,
    revision: str,
    *,
    applied: bool,
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
    _audit_resolve(settings, result, store_id)
    return result


def _audit_resolve(
    settings: Settings, result: schema_ops.ResolveResult, store_id: uuid.UUID | None
) -> None:
    """Write the resolution to master's audit log (master may itself be the one resolved,
    so this opens master directly rather than through the platform's head check)."""
    engine = make_engine(settings.master_url, pool_size=1)
    try:
        with Session(engine) as session, session.begin():
            audit.record(
                session,
                actor="cli",
                actor_app=settings.app,
                action="migration.resolved",
                target_type=f"{result.role}_database",
                target_id=result.url,
                store_id=store_id,
                details=asdict(result),
            )
    finally:
        engine.dispose()
