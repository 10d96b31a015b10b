"""The tenant database's side of an import: the import cursor kept there, the rows a new
store database is seeded with, and the foreign keys checked after the copy.

The cursor (``tenantry_import_cursor``) has one row per table copied: the last source key
copied, the rows and bytes so far, the running checksum of those rows, and whether the table is
done; its header row (``*``) holds the mapping's fingerprint and whether seeded defaults were
removed. Each batch of rows is committed with its cursor row (:func:`advance`), so the cursor
always says exactly which rows are in.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    MetaData,
    String,
    Table,
    Text,
    and_,
    func,
    select,
    update,
)

from tenantry.db.copy import normalise
from tenantry.imports.source import SourceTable

#: The cursor row that describes the import itself (not a table).
HEADER = "*"

_metadata = MetaData()
CURSOR = Table(
    "tenantry_import_cursor",
    _metadata,
    Column("table_name", String(64), primary_key=True),
    Column("last_key", Text),
    Column("rows_copied", BigInteger, nullable=False, default=0),
    Column("bytes_copied", BigInteger, nullable=False, default=0),
    Column("done", Boolean, nullable=False, default=False),
    #: The running checksum of the source rows copied so far (:class:`Digest`), committed with
    #: them: the verification compares it with the imported rows' without reading them twice.
    Column("digest", String(64)),
    #: On the header row: the mapping's fingerprint and whether seeded rows were removed.
    Column("note", Text),
)


def determined_rows(conn: Connection, table: Table) -> Counter[tuple[Any, ...]]:
    """``table``'s rows over the columns a seed determines (those without a generated
    default: no ids, no times), normalised, counted."""
    columns = [
        c
        for c in table.columns
        if not (c.default is not None and getattr(c.default, "is_callable", False))
        and not c.foreign_keys
    ]
    rows = conn.execute(select(*columns))
    return Counter(tuple(normalise(v) for v in row) for row in rows)


def self_referencing(st: SourceTable) -> bool:
    """Whether the tenant table ``st`` feeds has a foreign key into itself (a tree)."""
    return any(fk.referred_table is st.target for fk in st.target.foreign_key_constraints)


def advance(
    conn: Connection,
    name: str,
    last_key: str | None,
    rows: int,
    size: int,
    *,
    done: bool = False,
    digest: str | None = None,
) -> None:
    """Move table ``name``'s cursor on (in the caller's transaction)."""
    values: dict[str, Any] = {
        "rows_copied": CURSOR.c.rows_copied + rows,
        "bytes_copied": CURSOR.c.bytes_copied + size,
        "done": done,
    }
    if last_key is not None:
        values["last_key"] = last_key
    if digest is not None:
        values["digest"] = digest
    changed = conn.execute(
        update(CURSOR).where(CURSOR.c.table_name == name).values(values)
    ).rowcount
    if changed == 0:
        conn.execute(
            CURSOR.insert().values(
                table_name=name,
                last_key=last_key,
                rows_copied=rows,
                bytes_copied=size,
                done=done,
                digest=digest,
            )
        )


def dangling_references(conn: Connection, tables: list[Table]) -> list[str]:
    """Foreign keys of the imported tables that point to no row (inside the tenant database)."""
    found = []
    for table in tables:
        for fk in table.foreign_key_constraints:
            parent = fk.referred_table.alias("parent")
            links = zip(fk.columns, fk.elements, strict=True)
            pairs = [(c, parent.c[e.column.name]) for c, e in links]
            query = (
                select(func.count())
                .select_from(table.outerjoin(parent, and_(*(c == p for c, p in pairs))))
                .where(and_(*(c.is_not(None) for c, _ in pairs)))
                .where(pairs[0][1].is_(None))
            )
            missing = int(conn.scalar(query) or 0)
            if missing:
                found.append(f"{table.name}.{pairs[0][0].name}: {missing} rows point to no row")
    conn.rollback()
    return found
