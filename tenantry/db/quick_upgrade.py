"""An upgrade of a PostgreSQL database in as few round trips as its DDL allows (fleet runs).

Through Alembic's ``run_migrations`` a one-revision upgrade costs, besides its DDL: a version
table lookup, the revision read again, the version row updated, then the checksum table
looked up, the old hash deleted and the new one inserted. A fleet run has already read the
revision and proved the version table exists; here, under the migration lock, one statement
reads the revision again and whether the checksum table exists, the scripts run
(:func:`tenantry.db.migrations.run_scripts`), and one statement moves the version row (only
from the revision read: anything else is an error, and the whole transaction rolls back) and
records the scripts' hashes. Only for PostgreSQL, whose DDL commits or rolls back with them.
"""

from __future__ import annotations

from alembic.script import Script
from sqlalchemy import Connection, String, TableClause, column, func, literal, select, update
from sqlalchemy import table as table_clause
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.schema import CreateTable

from tenantry.db import migrations
from tenantry.db.checksums import checksum_rows, checksum_table
from tenantry.db.schemas import SchemaSpec
from tenantry.errors import MigrationError


def _versions(spec: SchemaSpec) -> TableClause:
    """The role's version table, as Alembic made it (one column)."""
    return table_clause(spec.version_table, column("version_num", String))


def state(conn: Connection, spec: SchemaSpec) -> tuple[str | None, bool]:
    """The revision of the PostgreSQL database on ``conn``, whose version table is known to
    exist, and whether it has its checksum table: one statement. ``(None, False)`` for an
    empty version table (the caller upgrades the ordinary way)."""
    versions = _versions(spec)
    sums = checksum_table(spec.role.value).name
    rows = conn.execute(
        select(versions.c.version_num, func.to_regclass(literal(sums)).is_not(None))
    ).all()
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
    table = checksum_table(spec.role.value)
    if not checksums_exist:
        conn.execute(CreateTable(table, if_not_exists=True))
    versions = _versions(spec)
    moved = (
        update(versions)
        .where(versions.c.version_num == start)
        .values(version_num=goal)
        .returning(versions.c.version_num)
        .cte("moved")
    )
    statement = insert(table).values(checksum_rows(revisions))
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.revision],
        set_={"checksum": statement.excluded.checksum, "applied_at": statement.excluded.applied_at},
    )
    counted = select(func.count()).select_from(moved).scalar_subquery()
    found = conn.execute(statement.add_cte(moved).returning(counted)).scalars().all()
    if any(n != 1 for n in found):
        raise MigrationError(
            f"the {spec.role} database's revision changed from {start} while it was being "
            "migrated; nothing was applied.",
            "Run the migration again.",
        )
