"""The tenant database's side of an import: the rows a new store database is seeded with, and
the foreign keys checked after the copy (the import cursor kept there: :mod:`.cursor`)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import Connection, Label, Table, and_, func, literal_column, select

from tenantry.db.copy import normalise
from tenantry.imports.source import SourceTable


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


def tables_with_rows(conn: Connection, tables: list[Table]) -> set[str]:
    """The names of ``tables`` holding at least one row, asked in one query."""
    if not tables:
        return set()
    probes = [
        select(literal_column("1")).select_from(t).exists().label(f"t{i}")
        for i, t in enumerate(tables)
    ]
    row = conn.execute(select(*probes)).one()
    return {t.name for t, filled in zip(tables, row, strict=True) if filled}


def self_referencing(st: SourceTable) -> bool:
    """Whether the tenant table ``st`` feeds has a foreign key into itself (a tree)."""
    return any(fk.referred_table is st.target for fk in st.target.foreign_key_constraints)


def dangling_references(conn: Connection, tables: list[Table]) -> list[str]:
    """Foreign keys of the imported tables that point to no row (inside the tenant database),
    every one counted in a single query."""
    checked: list[tuple[str, str]] = []
    counts: list[Label[int]] = []
    for table in tables:
        for fk in table.foreign_key_constraints:
            parent = fk.referred_table.alias(f"parent{len(counts)}")
            links = zip(fk.columns, fk.elements, strict=True)
            pairs = [(c, parent.c[e.column.name]) for c, e in links]
            missing = (
                select(func.count())
                .select_from(table.outerjoin(parent, and_(*(c == p for c, p in pairs))))
                .where(and_(*(c.is_not(None) for c, _ in pairs)))
                .where(pairs[0][1].is_(None))
            )
            counts.append(missing.scalar_subquery().label(f"fk{len(counts)}"))
            checked.append((table.name, pairs[0][0].name))
    if not counts:
        return []
    row = conn.execute(select(*counts)).one()
    conn.rollback()
    return [
        f"{table}.{column}: {int(missing)} rows point to no row"
        for (table, column), missing in zip(checked, row, strict=True)
        if missing
    ]
