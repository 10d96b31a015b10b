"""What ``fleet status --verify`` reads of a PostgreSQL database, in one statement.

Verifying a tenant needs its identity, its revision, the checksums recorded as its scripts
ran and its schema's fingerprint (:mod:`tenantry.db.schema_fingerprint`). Read one by one that
is four or five round trips, each with the driver's and SQLAlchemy's overhead; here they are
one ``UNION ALL`` in autocommit, told apart by their first column. A database where any of
those tables is missing (or another backend) gets ``None``: the caller reads the careful way.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Connection,
    RowMapping,
    Select,
    String,
    column,
    func,
    literal_column,
    null,
    select,
    text,
    union_all,
)
from sqlalchemy.exc import DBAPIError

from tenantry.db.checksums import checksum_table
from tenantry.db.engines import single_statements
from tenantry.db.identity import Identity, identity_from_rows, identity_table
from tenantry.db.schema_fingerprint import POSTGRESQL_DIGEST
from tenantry.db.schemas import SchemaSpec, version_rows

_IDENTITY, _VERSION, _CHECKSUM, _FINGERPRINT, _NO_CHECKSUMS = "i", "v", "h", "f", "n"


@dataclass(frozen=True)
class TenantSnapshot:
    """A database's identity, revision, recorded checksums and schema fingerprint."""

    identity: Identity | None
    revision: str | None
    #: Revision → the hash recorded when it was applied (empty: none recorded).
    checksums: dict[str, str]
    fingerprint: str


def _row(part: str, value: Any, revision: Any = None) -> Select[Any]:
    return select(
        literal_column(f"'{part}'"),
        revision if revision is not None else null(),
        null(),
        null(),
        null(),
        null(),
        value,
    )


@cache
def _statement(version_table: str, role: str, with_checksums: bool) -> CompoundSelect[Any]:
    """The one statement; ``with_checksums``: the database has a checksum table (its rows
    are read), else the statement checks that it has none (a row saying so, or its name)."""
    versions = version_rows(version_table)
    sums = checksum_table(role)
    i = identity_table.c
    digest = text(f"({POSTGRESQL_DIGEST})").columns(column("digest", String)).scalar_subquery()
    checksums = (
        _row(_CHECKSUM, sums.c.checksum, sums.c.revision).select_from(sums)
        if with_checksums
        else _row(_NO_CHECKSUMS, func.to_regclass(sums.name).cast(String))
    )
    return union_all(
        select(
            literal_column(f"'{_IDENTITY}'").label("part"),
            i.role,
            i.schema_name,
            i.instance_id,
            i.owner_app,
            i.created_at,
            null().label("value"),
        ),
        _row(_VERSION, versions.c.version_num).select_from(versions),
        checksums,
        _row(_FINGERPRINT, digest),
    )


#: Which statement the last database needed (a fleet's databases are mostly alike).
_last_with_checksums = True


def read_snapshot(conn: Connection, spec: SchemaSpec) -> TenantSnapshot | None:
    """The snapshot of the PostgreSQL database on ``conn``, in one round trip when it is like
    the last one read (two otherwise); None on other backends, or when a table it reads is
    missing (nothing is left open either way)."""
    global _last_with_checksums
    if conn.dialect.name != "postgresql":
        return None
    first = _last_with_checksums
    for with_checksums in (first, not first):
        rows = _read(conn, _statement(spec.version_table, spec.role.value, with_checksums))
        if rows is None:
            continue
        if not with_checksums and any(
            r["part"] == _NO_CHECKSUMS and r["value"] is not None for r in rows
        ):
            continue  # it has a checksum table: its rows must be read
        _last_with_checksums = with_checksums
        return _snapshot(rows)
    return None


def _read(conn: Connection, statement: CompoundSelect[Any]) -> list[RowMapping] | None:
    with single_statements(conn):
        try:
            rows = list(conn.execute(statement).mappings().all())
        except DBAPIError:  # a table is missing
            conn.rollback()
            return None
        conn.rollback()
    return rows


def _snapshot(rows: list[RowMapping]) -> TenantSnapshot | None:
    versions = [r["value"] for r in rows if r["part"] == _VERSION]
    if len(versions) > 1:
        return None  # the careful readers say what is wrong
    return TenantSnapshot(
        identity_from_rows([r for r in rows if r["part"] == _IDENTITY]),
        versions[0] if versions else None,
        {r["role"]: r["value"] for r in rows if r["part"] == _CHECKSUM},
        next(str(r["value"]) for r in rows if r["part"] == _FINGERPRINT),
    )
