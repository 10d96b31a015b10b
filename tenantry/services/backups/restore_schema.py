"""Restoring a shared-schema store in place: a staging schema next to its own, checked, then
swapped in by two schema renames in one PostgreSQL transaction (the store's role gets its
privileges on it in the same transaction); the replaced schema is dropped after, as the
replaced database of an own-database restore is.

The backup is ``pg_dump --schema`` of the store's schema, so it restores under that name only:
it is restored into a scratch database first (checked there: identity, amcheck, row counts),
renamed there to the staging name, and copied into the shared database under that name
(``pg_dump | pg_restore``), where it is checked again (identity, revision, row counts) before
the switch. Neighbour stores' schemas are never touched. A failure before the switch drops the
staging schema and the scratch database and leaves the store's schema as it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy.engine import URL

from tenantry.backup import artifacts
from tenantry.backup.dump_tools import engine_for
from tenantry.backup.storage import Storage
from tenantry.db import migrations
from tenantry.db import shared_schemas as shared
from tenantry.db.engines import connect, make_engine
from tenantry.db.identity import expect
from tenantry.db.master.models import Backup
from tenantry.db.schemas import Role, SchemaSpec
from tenantry.errors import Conflict, UnidentifiedDatabase, WrongDatabase
from tenantry.failpoints import failpoint
from tenantry.services.backups.restore_switch import checked_counts, staged
from tenantry.services.backups.verification import restore_artifact, scratch_database


def staging_schema(schema: str, backup_id: uuid.UUID) -> str:
    """The name backup ``backup_id`` of ``schema`` is restored under before it replaces it."""
    return f"{schema[:45]}_rs_{backup_id.hex[:8]}"


def restore_schema_and_switch(
    storage: Storage,
    backup: Backup,
    target: URL,
    spec: SchemaSpec,
    role: str,
    on_progress: artifacts.Progress | None,
    before_switch: Callable[[], None] | None,
) -> dict[str, int]:
    """Restore ``backup`` into a staging schema next to the schema ``target`` is confined to
    (see :func:`~tenantry.db.shared_schemas.schema_url`), check it, then swap it in for
    ``role``'s store; the restored row counts. A failure before the switch leaves the target
    schema as it was (the staging schema is dropped)."""
    schema = shared.schema_of(target)
    assert schema is not None, "a schema-confined URL"
    admin = shared.whole_database(target)
    database = str(target.database)
    staging = staging_schema(schema, backup.id)
    shared.drop_schema(admin, database, staging)  # left by a killed run
    try:
        counts = staged(
            lambda: _stage(storage, backup, target, staging, spec, on_progress),
            before_switch,
            backup.id,
            target,
        )
        replaced = shared.swap_schema(admin, database, staging, schema, role)
    except BaseException:
        shared.drop_schema(admin, database, staging)
        raise
    shared.drop_schema(admin, database, replaced)
    return counts


def _stage(
    storage: Storage,
    backup: Backup,
    target: URL,
    staging: str,
    spec: SchemaSpec,
    on_progress: artifacts.Progress | None,
) -> dict[str, int]:
    """The backup restored, checked, and copied into ``staging`` of the target's database."""
    schema = str(shared.schema_of(target))
    with scratch_database(target, backup.id, purpose="restore") as scratch:
        restore_artifact(storage, backup, scratch, on_progress)
        counts = checked_counts(backup, scratch, "The store's schema was not touched.")
        whole = shared.whole_database(scratch)
        shared.rename_schema(whole, str(scratch.database), schema, staging)
        engine = engine_for(target)
        renamed = shared.schema_url(whole, str(scratch.database), staging)
        with engine.dump(renamed) as (stream, _info):
            engine.restore(shared.whole_database(target), stream)
    failpoint("restore.staged")
    _check_staging(backup, target, staging, spec, counts)
    return counts


def _check_staging(
    backup: Backup, target: URL, staging: str, spec: SchemaSpec, counts: dict[str, int]
) -> None:
    """The staging schema in the shared database is the backup's: its identity, revision and
    row counts."""
    url = shared.schema_url(shared.whole_database(target), str(target.database), staging)
    found = engine_for(url).row_counts(url)
    problems = [
        f"table {t}: {found.get(t)} rows in the staging schema, {n} restored"
        for t, n in sorted(counts.items())
        if found.get(t) != n
    ]
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            try:
                expect(
                    conn,
                    Role(backup.role),
                    where=f"staging schema {staging}",
                    instance_id=backup.instance_id,
                )
            except (WrongDatabase, UnidentifiedDatabase) as refused:
                problems.append(refused.message)
            revision = migrations.current(conn, spec)
    finally:
        engine.dispose()
    if backup.schema_revision and revision != backup.schema_revision:
        problems.append(f"revision {revision}, the backup says {backup.schema_revision}")
    if problems:
        raise Conflict(
            f"staging schema {staging} of backup {backup.id} failed its checks: "
            f"{'; '.join(problems)}. The store's schema was not touched.",
            "Verify the backup (`tenantry backup verify`) and choose another one.",
        )
