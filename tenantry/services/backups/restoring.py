"""Restoring a backup (seed 004's restore script, made safe).

A restore is planned first (which backup, from when, into what, how) and refused when the
target is another role's database, another instance, or a different engine. A live target is
only replaced when the caller repeats its database name, after a pinned safety backup of it.
The backup is restored into a new staging database and checked there; only then does it
replace the target in one step (PostgreSQL: two renames in one transaction; MySQL: one
``RENAME TABLE`` moving every table; SQLite: the online backup API). A failure before the
switch leaves the target exactly as it was.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from tenantry.backup import artifacts
from tenantry.backup.dump_tools import database_label
from tenantry.backup.dump_tools.sqlite import replace_sqlite
from tenantry.backup.storage import Storage
from tenantry.crypto import SecretBox
from tenantry.db.admin import create_database, database_exists, drop_database
from tenantry.db.engines import connect, make_engine, sqlite_path, writer_sessions
from tenantry.db.identity import Identity, expect
from tenantry.db.master.models import Backup, IntegrationConfig, Store
from tenantry.db.schemas import Role, SchemaSpec, schema_for
from tenantry.db.types import utcnow
from tenantry.db.urls import backend_of, mask, parse_url, redact
from tenantry.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    TenantryError,
    WrongDatabase,
)
from tenantry.failpoints import failpoint
from tenantry.services import audit
from tenantry.services.backups.taking import take_backup
from tenantry.services.backups.targets import BackupTarget
from tenantry.services.backups.verification import (
    check_restored,
    get_backup,
    require_good,
    restore_artifact,
)
from tenantry.services.connections import tenant_url
from tenantry.services.counters import StoreCounters, apply_counters
from tenantry.services.write_blocks import active_block
from tenantry.settings import Settings

#: How long a tenant's writes stay blocked at most if a restore dies holding the block.
WRITE_BLOCK_S = 3600


@dataclass
class RestorePlan:
    """What a restore would do; shown before anything changes."""

    backup_id: uuid.UUID
    backup_role: str
    backup_slug: str | None
    backup_taken_at: str
    backup_revision: str | None
    target: URL
    target_shown: str
    in_place: bool
    #: The target holds data now: replacing it needs the name typed and a safety backup.
    live: bool
    #: What the user must type (or pass to --confirm) to replace a live target.
    confirm_name: str
    method: str
    target_identity: str | None
    store_id: uuid.UUID | None = None
    notes: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The plan as JSON, without the target's credentials."""
        return {
            "backup": str(self.backup_id),
            "role": self.backup_role,
            "store": self.backup_slug,
            "taken_at": self.backup_taken_at,
            "schema_revision": self.backup_revision,
            "target": self.target_shown,
            "in_place": self.in_place,
            "live_target": self.live,
            "confirm_name": self.confirm_name,
            "method": self.method,
            "target_identity": self.target_identity,
            "notes": self.notes,
        }


METHODS = {
    "postgresql": "restored into a new database, then swapped in by renaming (one transaction)",
    "mysql": "restored into a new database, then every table moved in one RENAME TABLE",
    "sqlite": "restored into a staging file, checked, then copied in by SQLite's backup API",
}


def _own_url(session: Session, box: SecretBox, settings: Settings, backup: Backup) -> URL:
    if backup.role == Role.MASTER:
        return settings.master_url
    if backup.role == Role.BILLING:
        return settings.billing_url
    store = session.get(Store, backup.store_id) if backup.store_id else None
    config = (
        session.query(IntegrationConfig)
        .filter_by(store_id=backup.store_id, is_active=True)
        .one_or_none()
    )
    if store is None or config is None:
        raise NotFound(
            f"store {backup.slug} (of backup {backup.id}) has no database to restore in place.",
            "Restore it with --target URL into a database you choose.",
        )
    blocked = active_block(store)
    if blocked is not None:
        raise Conflict(
            f"store {backup.slug}'s writes are blocked ({blocked}); it cannot be restored now.",
            "Wait for the move or restore in progress to finish (tenantry stores show).",
        )
    if config.instance_id and config.instance_id != backup.instance_id:
        raise WrongDatabase(
            f"store {backup.slug}'s database is now instance {config.instance_id}, the backup "
            f"is of instance {backup.instance_id}; restoring it in place would swap in "
            "another database.",
            "Restore it with --target URL, then point the store at it deliberately.",
        )
    return tenant_url(box, config)


def _inspect_target(url: URL, spec: SchemaSpec, backup: Backup) -> tuple[bool, Identity | None]:
    """Whether the target exists, and its identity once the guard found it to be the backup's
    own database (``None``: an empty one). Never creates it."""
    path = sqlite_path(url)
    exists = path.is_file() if path is not None else database_exists(url)
    if not exists:
        return False, None
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            identity = expect(
                conn,
                spec,
                where=mask(url),
                instance_id=backup.instance_id,
                why=f"backup {backup.id} never lands in another role's or another instance's "
                "database, nor over tables a restore would destroy",
                hint="Restore it into the backup's own database (--in-place) or into a new, "
                "empty database.",
                empty_ok=True,
            )
    finally:
        engine.dispose()
    return True, identity


def plan_restore(
    session: Session,
    box: SecretBox,
    settings: Settings,
    backup_ref: str,
    *,
    target: str | None,
    in_place: bool,
) -> RestorePlan:
    """Check a restore of ``backup_ref`` into ``target`` (or in place) and describe it.

    Refuses a bad backup, a target of another engine, role or instance, and a non-empty
    database without tenantry identity. Changes nothing.
    """
    if in_place == (target is not None):
        raise InvalidInput(
            "give exactly one of --target URL or --in-place.",
            "--in-place replaces the backup's own database; --target restores elsewhere.",
        )
    backup = get_backup(session, backup_ref)
    require_good(backup)
    url = (
        _own_url(session, box, settings, backup)
        if in_place
        else parse_url(target or "", setting="--target")
    )
    shown = mask(url)
    exists, identity = _inspect_target(url, schema_for(backup.role, settings.tenant_schema), backup)
    if backend_of(url) != backup.engine:
        raise InvalidInput(
            f"backup {backup.id} is a {backup.engine} dump; {shown} is {backend_of(url)}.",
            "Restore into a database of the same engine (to change engines, move the store: "
            "tenantry stores move).",
        )
    live = identity is not None  # the guard refused tables without identity
    notes = []
    if live:
        notes.append("the target holds data: a pinned safety backup of it is taken first")
    if not exists:
        notes.append("the target database does not exist yet: it will be created")
    return RestorePlan(
        backup_id=backup.id,
        backup_role=backup.role,
        backup_slug=backup.slug,
        backup_taken_at=backup.started_at.isoformat(timespec="seconds"),
        backup_revision=backup.schema_revision,
        target=url,
        target_shown=shown,
        in_place=in_place,
        live=live,
        confirm_name=database_label(url),
        method=METHODS[backup.engine],
        target_identity=identity.describe() if identity else None,
        store_id=backup.store_id if in_place else None,
        notes=notes,
    )


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
        counts = _restore_and_switch(storage, backup, plan.target, on_progress, before_switch)
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


def _restore_and_switch(
    storage: Storage,
    backup: Backup,
    target: URL,
    on_progress: artifacts.Progress | None,
    before_switch: Callable[[], None] | None,
) -> dict[str, int]:
    staging = _staging_url(target, backup.id)
    drop_database(staging)
    create_database(staging)
    try:
        try:
            restore_artifact(storage, backup, staging, on_progress)
            problems, _notes, counts = check_restored(backup, staging)
            if problems:
                raise Conflict(
                    f"the restored copy of backup {backup.id} failed its checks: "
                    f"{'; '.join(problems)}. The target was not touched.",
                    "Verify the backup (`tenantry backup verify`) and choose another one.",
                )
            failpoint("restore.before_switch")
            if before_switch is not None:
                before_switch()
        except TenantryError:
            raise
        except Exception as exc:
            raise RestoreFailed.before_switch(exc, backup.id, target) from exc
        _switch(staging, target)
    finally:
        drop_database(staging)
    return counts


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


def _staging_url(target: URL, backup_id: uuid.UUID) -> URL:
    suffix = f"_restoring_{backup_id.hex[:8]}"
    path = sqlite_path(target)
    if path is not None:
        return target.set(database=str(path.with_name(f".{path.stem}{suffix}.db")))
    name = str(target.database)
    return target.set(database=name[: 63 - len(suffix)] + suffix)


def _switch(staging: URL, target: URL) -> None:
    backend = backend_of(target)
    if backend == "sqlite":
        replace_sqlite(sqlite_path(staging), sqlite_path(target))  # type: ignore[arg-type]
    elif backend == "postgresql":
        _switch_postgres(staging, target)
    else:
        _switch_mysql(staging, target)


def _switch_postgres(staging: URL, target: URL) -> None:
    name, new = str(target.database), str(staging.database)
    old = name[:50] + "_old_" + uuid.uuid4().hex[:6]
    engine = make_engine(target.set(database="postgres"), pooled=False)
    try:
        with connect(engine) as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            conn.rollback()
            q = conn.dialect.identifier_preparer.quote
            for attempt in range(20):
                try:
                    with conn.begin():
                        if exists:
                            # Sessions on the target would block the rename; they reconnect
                            # to the restored database.
                            conn.execute(
                                text(
                                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE datname IN (:a, :b) AND pid <> pg_backend_pid()"
                                ),
                                {"a": name, "b": new},
                            )
                            conn.execute(text(f"ALTER DATABASE {q(name)} RENAME TO {q(old)}"))
                        conn.execute(text(f"ALTER DATABASE {q(new)} RENAME TO {q(name)}"))
                    break
                except DBAPIError:
                    if attempt == 19:
                        raise
                    time.sleep(0.1)  # a client reconnected between terminate and rename
    finally:
        engine.dispose()
    if exists:
        drop_database(target.set(database=old))


def _switch_mysql(staging: URL, target: URL) -> None:
    name, new = str(target.database), str(staging.database)
    old_url = target.set(database=name[:50] + "_old_" + uuid.uuid4().hex[:6])
    create_database(old_url)
    engine = make_engine(target, pooled=False)
    try:
        with connect(engine) as conn:
            current = inspect(conn).get_table_names()
            restored = inspect(conn).get_table_names(schema=new)
            q = conn.dialect.identifier_preparer.quote
            moves = [f"{q(name)}.{q(t)} TO {q(str(old_url.database))}.{q(t)}" for t in current]
            moves += [f"{q(new)}.{q(t)} TO {q(name)}.{q(t)}" for t in restored]
            # One RENAME TABLE is atomic: other sessions see all old tables or all new ones.
            conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
            conn.exec_driver_sql("RENAME TABLE " + ", ".join(moves))
    finally:
        engine.dispose()
    drop_database(old_url)


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
