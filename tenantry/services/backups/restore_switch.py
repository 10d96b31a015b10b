"""Restoring into a staging database next to the target, checking it there, then replacing
the target in one step: PostgreSQL two renames in one transaction, MySQL one ``RENAME TABLE``
moving every table, SQLite the online backup API."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from sqlalchemy import inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tenantry.backup import artifacts
from tenantry.backup.dump_tools.sqlite import replace_sqlite
from tenantry.backup.storage import Storage
from tenantry.db.admin import create_database, drop_database
from tenantry.db.engines import connect, make_engine, sqlite_path
from tenantry.db.master.models import Backup
from tenantry.db.urls import backend_of, mask, redact
from tenantry.errors import (
    Conflict,
    TenantryError,
)
from tenantry.failpoints import failpoint
from tenantry.services.backups.verification import (
    check_restored,
    restore_artifact,
)


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
