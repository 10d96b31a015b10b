"""An upgrade of a database in as few statements as its DDL allows (fleet runs).

Through Alembic's ``run_migrations`` a one-revision upgrade costs, besides its DDL: a version
table lookup, the revision read again, the version row updated, then the checksum table
looked up, the old hash deleted and the new one inserted. A fleet run has already read the
revision and proved the version table exists; here, under the migration lock, one statement
reads the revision again and whether the checksum table exists, the scripts run
(:func:`tenantry.db.migrations.run_scripts`), and one statement moves the version row (only
from the revision read: anything else is an error, and the whole transaction rolls back) and
records the scripts' hashes. Only for the backends whose DDL commits or rolls back with the
version row (:func:`supports`): PostgreSQL does the move and the record in one statement;
SQLite, which has no data-modifying CTE, in two (an UPDATE whose row count proves the move, and
an upsert per hash, executed as one ``executemany``), all in-process. MySQL/MariaDB commit each
DDL statement on its own, so their upgrades keep Alembic's per-revision version updates.

Both statements are built once per process for a revision step and reused for every tenant
of a run (only the time of application is a parameter): building one and deriving its cache
key was a third of a tenant's Python time in a fleet run, the DDL's round trips aside.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

from alembic.script import Script
from sqlalchemy import (
    Connection,
    Insert,
    Select,
    String,
    Update,
    bindparam,
    column,
    exists,
    func,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy import table as sql_table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateTable

from tenantry.db import migrations
from tenantry.db.checksums import checksum_table, script_checksum
from tenantry.db.schemas import SchemaSpec, version_rows
from tenantry.db.types import utcnow
from tenantry.errors import MigrationError

#: The dialects whose DDL is transactional: the scripts, the version row and the hashes
#: commit or roll back together.
_DIALECTS = frozenset({"postgresql", "sqlite"})

_SQLITE_MASTER = sql_table("sqlite_master", column("type", String), column("name", String))


def supports(dialect: str) -> bool:
    """Whether a checked database of ``dialect`` can be upgraded this way."""
    return dialect in _DIALECTS


@cache
def _state_statement(dialect: str, version_table: str, role: str) -> Select[Any]:
    versions = version_rows(version_table)
    sums = checksum_table(role).name
    if dialect == "sqlite":
        found = (
            exists()
            .where(_SQLITE_MASTER.c.type == "table", _SQLITE_MASTER.c.name == sums)
            .select_from(_SQLITE_MASTER)
        )
        return select(versions.c.version_num, found)
    return select(versions.c.version_num, func.to_regclass(literal(sums)).is_not(None))


def state(conn: Connection, spec: SchemaSpec) -> tuple[str | None, bool]:
    """The revision of the database on ``conn`` (a dialect :func:`supports`), whose version
    table is known to exist, and whether it has its checksum table: one statement.
    ``(None, False)`` for an empty version table (the caller upgrades the ordinary way)."""
    statement = _state_statement(conn.dialect.name, spec.version_table, spec.role.value)
    rows = conn.execute(statement).all()
    if len(rows) > 1:
        return migrations.current(conn, spec, table_exists=True), False  # raises: several heads
    if not rows:
        return None, False
    return rows[0][0], bool(rows[0][1])


def apply(
    conn: Connection,
    spec: SchemaSpec,
    start: str,
    goal: str,
    revisions: list[Script],
    *,
    checksums_exist: bool,
) -> None:
    """Run ``revisions`` (from ``start`` to ``goal``, oldest first) on ``conn`` in the
    caller's transaction, then move the version row from ``start`` to ``goal`` and record
    each revision's script hash in one statement. Raises :class:`MigrationError` when the
    version row is no longer at ``start`` (the caller's transaction must then roll back)."""
    migrations.run_scripts(conn, spec, revisions)
    if not checksums_exist:
        conn.execute(CreateTable(checksum_table(spec.role.value), if_not_exists=True))
    sums = tuple((script.revision, script_checksum(script)) for script in revisions)
    if conn.dialect.name == "sqlite":
        moved = _sqlite_move_and_record(conn, spec, start, goal, sums)
    else:
        statement = _move_and_record(spec.version_table, spec.role.value, start, goal, sums)
        found = conn.execute(statement, {"applied_at": utcnow()}).scalars().all()
        moved = all(n == 1 for n in found)
    if not moved:
        raise MigrationError(
            f"the {spec.role} database's revision changed from {start} while it was being "
            "migrated; nothing was applied.",
            "Run the migration again.",
        )


@lru_cache(maxsize=256)
def _move_and_record(
    version_table: str, role: str, start: str, goal: str, sums: tuple[tuple[str, str], ...]
) -> Insert:
    """One statement: move the version row from ``start`` to ``goal`` and upsert each
    revision's ``sums`` (revision, script hash) at ``:applied_at``; it returns, per row
    recorded, how many version rows moved (1 each, else the revision changed under it)."""
    table = checksum_table(role)
    versions = version_rows(version_table)
    moved = (
        update(versions)
        .where(versions.c.version_num == start)
        .values(version_num=goal)
        .returning(versions.c.version_num)
        .cte("moved")
    )
    applied_at = bindparam("applied_at", type_=table.c.applied_at.type)
    # INSERT … SELECT, not a multi-row VALUES: SQLAlchemy gives a statement with several
    # VALUES rows no cache key, so it would be compiled again for every tenant.
    rows = union_all(
        *(
            select(literal(revision, String), literal(checksum, String), applied_at)
            for revision, checksum in sums
        )
    )
    statement = postgresql.insert(table).from_select(["revision", "checksum", "applied_at"], rows)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.revision],
        set_={"checksum": statement.excluded.checksum, "applied_at": statement.excluded.applied_at},
    )
    counted = select(func.count()).select_from(moved).scalar_subquery()
    return statement.add_cte(moved).returning(counted)


@cache
def _sqlite_statements(version_table: str, role: str) -> tuple[Update, Insert]:
    """The version move (its row count proves it) and the per-revision hash upsert, with
    every value a parameter, so both are compiled once per process."""
    versions = version_rows(version_table)
    move = (
        update(versions)
        .where(versions.c.version_num == bindparam("start"))
        .values(version_num=bindparam("goal"))
    )
    table = checksum_table(role)
    record = sqlite.insert(table)
    record = record.on_conflict_do_update(
        index_elements=[table.c.revision],
        set_={"checksum": record.excluded.checksum, "applied_at": record.excluded.applied_at},
    )
    return move, record


def _sqlite_move_and_record(
    conn: Connection, spec: SchemaSpec, start: str, goal: str, sums: tuple[tuple[str, str], ...]
) -> bool:
    """Move the version row from ``start`` to ``goal`` and, if it moved, record ``sums``;
    ``False`` when no row was at ``start`` (nothing recorded; the caller raises)."""
    move, record = _sqlite_statements(spec.version_table, spec.role.value)
    if conn.execute(move, {"start": start, "goal": goal}).rowcount != 1:
        return False
    now = utcnow()
    rows = [{"revision": rev, "checksum": checksum, "applied_at": now} for rev, checksum in sums]
    conn.execute(record, rows)
    return True
