"""What a database is and which revision it is at, read in one statement.

Visiting a thousand tenant databases, the reads themselves are cheap; what costs is every
extra round trip and, on PostgreSQL, the ``BEGIN``/``ROLLBACK`` around them. The usual case
(identity and version table both there) is one ``UNION ALL`` outside any transaction; any
other case falls back to the careful readers, which look the tables up first.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import (
    CompoundSelect,
    Connection,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.exc import DBAPIError

from tenantry.db import migrations
from tenantry.db.engines import single_statements
from tenantry.db.identity import Identity, identity_from_rows, identity_table, read_identity
from tenantry.db.schemas import SchemaSpec, version_rows

_IDENTITY_ROW, _VERSION_ROW = "i", "v"


@cache
def _statement(version_table: str) -> CompoundSelect[Any]:
    """Identity rows and version rows in one result, told apart by their first column."""
    versions = version_rows(version_table)
    i = identity_table.c
    return union_all(
        select(
            literal_column(f"'{_IDENTITY_ROW}'").label("part"),
            i.role,
            i.schema_name,
            i.instance_id,
            i.owner_app,
            i.created_at,
            null().label("version_num"),
        ),
        select(
            literal_column(f"'{_VERSION_ROW}'"),
            null(),
            null(),
            null(),
            null(),
            null(),
            versions.c.version_num,
        ),
    )


def probe(conn: Connection, spec: SchemaSpec) -> tuple[Identity | None, str | None]:
    """The database's identity and revision (``None`` for each that is missing).

    Never writes and ends with no transaction open. On PostgreSQL the read runs in
    autocommit, so it costs a single round trip; the connection's isolation level is put
    back afterwards.
    """
    with single_statements(conn):
        try:
            rows = conn.execute(_statement(spec.version_table)).mappings().all()
        except DBAPIError:  # a table is missing (or more is wrong): look before reading
            conn.rollback()
            found = read_identity(conn), migrations.current(conn, spec)
            conn.rollback()
            return found
        conn.rollback()
    identities = [r for r in rows if r["part"] == _IDENTITY_ROW]
    versions = [r["version_num"] for r in rows if r["part"] == _VERSION_ROW]
    if len(versions) > 1:
        return identity_from_rows(identities), migrations.current(conn, spec)  # raises
    return identity_from_rows(identities), versions[0] if versions else None
