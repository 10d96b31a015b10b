"""The checks before rows are recovered from a backup (see
:mod:`tenantry.services.backups.recovery`): which table, which filter, which live database.
Everything here only reads."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, Table, inspect
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db.identity import is_tenantry_table
from tenantry.db.master.models import Backup, Store
from tenantry.db.schemas import Role, SchemaSpec
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput, NotFound, WrongDatabase
from tenantry.services.backups.targets import BackupTarget, identify, resolve
from tenantry.settings import Settings


def recoverable_table(spec: SchemaSpec, name: str) -> Table:
    """The model table ``name`` of ``spec``; tenantry's own tables and unknown names refused."""
    valid = sorted(t.name for t in spec.metadata.sorted_tables if not is_tenantry_table(t.name))
    listed = ", ".join(valid)
    if is_tenantry_table(name):
        raise InvalidInput(
            f"{name} is tenantry's own bookkeeping (identity, versions, checksums); its rows "
            "are never recovered one by one.",
            f"Choose one of the {spec.name} tables: {listed}.",
        )
    table = spec.metadata.tables.get(name)
    if table is None:
        raise InvalidInput(
            f"the {spec.name} schema has no table {name!r}.",
            f"Choose one of: {listed}.",
        )
    if not table.primary_key.columns:
        raise InvalidInput(
            f"table {name} has no primary key, so its rows cannot be matched with the live ones.",
            "Restore the backup into a new database (tenantry restore --target) and compare "
            "by hand.",
        )
    return table


def check_where(where: str | None) -> str | None:
    """The ``--where`` expression, refused when it is empty or holds a ``;``."""
    if where is None:
        return None
    if not where.strip():
        raise InvalidInput("--where is empty.", "Leave it out to take every row of the table.")
    if ";" in where:
        raise InvalidInput(
            f"--where {where!r} holds a ';': it must be one SQL expression, not statements.",
            "Write a condition on the table's columns, e.g. --where \"created_at < '2026-01-22'\".",
        )
    return where.strip()


def live_target(
    session: Session, box: SecretBox, settings: Settings, backup: Backup
) -> BackupTarget:
    """The backup's own live database, after checking its identity is the backup's instance."""
    scope = f"store:{backup.slug}" if backup.role == Role.TENANT else str(backup.role)
    try:
        target = resolve(session, box, settings, scope)
    except NotFound:
        raise NotFound(
            f"store {backup.slug} (of backup {backup.id}) has no active database to recover "
            "rows into.",
            "Restore the backup with `tenantry restore --target URL` into a database you "
            "choose instead.",
        ) from None
    if backup.store_id is not None and target.store_id != backup.store_id:
        raise WrongDatabase(
            f"backup {backup.id} is of store id {backup.store_id}; the store now named "
            f"{backup.slug} is {target.store_id}. Nothing was changed.",
            "Rows are recovered only into the database the backup was taken of.",
        )
    if target.instance_id and target.instance_id != backup.instance_id:
        raise WrongDatabase(
            f"backup {backup.id} is of instance {backup.instance_id}; master records instance "
            f"{target.instance_id} for {scope}. Rows from one database are never merged into "
            "another; nothing was changed.",
            f"Choose a backup of this database (`tenantry backup list --db {scope}`).",
        )
    identify(
        target,
        instance_id=backup.instance_id,
        why=f"backup {backup.id} is of instance {backup.instance_id}, and rows from one "
        "database are never merged into another",
        hint=f"Choose a backup of this database (`tenantry backup list --db {scope}`), or fix "
        "the store's connection (or the URL settings) if it leads elsewhere.",
    )
    return target


def check_columns(conn: Connection, table: Table, where: str) -> None:
    """Refuse a database whose ``table`` lacks, or has more than, the model's columns."""
    found = inspect(conn)
    if not found.has_table(table.name):
        raise Conflict(
            f"{where} has no table {table.name}.",
            "The schema changed since: migrate, or restore the backup whole to compare.",
        )
    names = {c["name"] for c in found.get_columns(table.name)}
    expected = {c.name for c in table.columns}
    if names != expected:
        extra, lacking = sorted(names - expected), sorted(expected - names)
        raise Conflict(
            f"table {table.name} in {where} does not have this code's columns "
            f"(not in the models: {', '.join(extra) or 'none'}; missing: "
            f"{', '.join(lacking) or 'none'}). Nothing was changed.",
            "Rows are recovered only between databases at the same schema for this table: "
            "migrate the live database, or restore the backup whole into a new database.",
        )


def blocked_reason(session: Session, store_id: uuid.UUID | None) -> str | None:
    """Why the store's writes are blocked now (being moved or restored), or ``None``."""
    store = session.get(Store, store_id) if store_id else None
    if store is None or store.write_block_reason is None or store.write_block_until is None:
        return None
    return store.write_block_reason if store.write_block_until > utcnow() else None
