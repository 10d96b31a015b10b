"""The data checks of an import's plan: the rows each store would get per table, and the rows
whose store key matches no store (orphans), values that do not fit their tenant column, and
foreign keys that point to no row or to another store's row, each with example keys.

Done by the source's server where it can judge them as Python does (:mod:`.sql_store_checks`
and :mod:`.sql_value_checks`: a few queries per table, Python converting only the rows SQL
cannot clear); otherwise here, one pass over every mapped row in Python. Both read rows in
key order, so both report the same examples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Engine, ForeignKeyConstraint, Table, select

from tenantry.db.copy import normalise
from tenantry.db.engines import connect
from tenantry.imports.problems import Problems, converted_or_reported, report_orphan
from tenantry.imports.source import SourceTable, key_of, show_key, snapshot
from tenantry.imports.sql_store_checks import NotInSql, SqlChecks

if TYPE_CHECKING:
    from tenantry.imports.plan import StoreTarget


def _foreign_keys(target: Table, tables: dict[str, SourceTable]) -> list[ForeignKeyConstraint]:
    """The tenant table's single-column foreign keys into mapped tables."""
    return [
        fk
        for fk in target.foreign_key_constraints
        if fk.referred_table.name in tables and len(fk.columns) == 1
    ]


def _target_key(target: Table, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(normalise(row[c.name]) for c in target.primary_key.columns)


def check_data(
    source: Engine,
    tables: dict[str, SourceTable],
    targets: list[StoreTarget],
    stores_key: Column[Any],
    problems: Problems,
    *,
    in_sql: bool = True,
) -> bool:
    """Counts per store, orphans, bad values and foreign keys of every mapped row (into
    ``targets``' rows and ``problems``); whether the source's server did them (``in_sql`` and
    a mapping it can judge exactly), else Python."""
    chosen = {normalise(t.key): t for t in targets}
    if in_sql:
        found = Problems()
        fks = {name: _foreign_keys(st.target, tables) for name, st in tables.items()}
        try:
            with connect(source) as conn:
                counts = SqlChecks(snapshot(conn), tables, stores_key, fks).run(chosen, found)
        except NotInSql:
            pass  # a comparison SQL cannot make as Python does: Python reads every row
        else:
            problems.extend(found)
            for key, rows in counts.items():
                chosen[key].rows.update(rows)
            return True
    with connect(source) as conn:
        known = {normalise(k) for k in conn.scalars(select(stores_key))}
    _check_in_python(source, tables, chosen, known, problems)
    for target in targets:
        for name in tables:
            target.rows.setdefault(name, 0)
    return False


def _check_in_python(
    source: Engine,
    tables: dict[str, SourceTable],
    chosen: dict[Any, StoreTarget],
    known: set[Any],
    problems: Problems,
) -> None:
    """One pass over every mapped row, in key order, in Python."""
    owners: dict[str, dict[tuple[Any, ...], Any]] = {}  # table → tenant key → store key
    source_keys: dict[str, dict[Any, Any]] = {}  # table → source key → store key (via)
    with connect(source) as conn:
        for name, st in tables.items():
            owner: dict[tuple[Any, ...], Any] = {}
            by_source: dict[Any, Any] = {}
            pending_refs: list[tuple[str, str, Any, tuple[Any, ...], Any]] = []
            extra: list[Column[Any]] = []
            path = st.mapping.store_column or (st.mapping.parent or ("", ""))[1]
            if path not in [c.name for c in st.source_columns]:
                extra.append(st.table.c[path])
            fks = _foreign_keys(st.target, tables)
            result = conn.execution_options(yield_per=2000).execute(
                select(*st.source_columns, *extra).order_by(*st.key)
            )
            for row_ in result:
                row = dict(row_._mapping)
                shown = show_key(key_of(st, row))
                if st.mapping.store_column is not None:
                    store_key = normalise(row[path])
                    if store_key not in known:
                        report_orphan(problems, st, path, shown)
                        continue
                else:
                    parent = (st.mapping.parent or ("", ""))[0]
                    store_key = source_keys.get(parent, {}).get(normalise(row[path]))
                    if store_key is None:
                        report_orphan(problems, st, path, shown)
                        continue
                by_source[normalise(row[st.key[0].name])] = store_key
                converted = converted_or_reported(problems, st, row, shown)
                if converted is None:
                    continue
                owner[_target_key(st.target, converted)] = store_key
                target = chosen.get(store_key)
                if target is not None:
                    target.rows[name] = target.rows.get(name, 0) + 1
                for fk in fks:
                    fk_column = next(iter(fk.columns)).name
                    value = converted.get(fk_column)
                    if value is not None:
                        ref = (normalise(value),)
                        parent = fk.referred_table.name
                        pending_refs.append((fk_column, parent, store_key, ref, shown))
            owners[name] = owner
            source_keys[name] = by_source
            for column, parent, store_key, ref, shown in pending_refs:
                parent_owner = owners.get(parent, {}).get(ref)
                if parent_owner is None:
                    problems.add(
                        "dangling_fk",
                        f"points to no row of {parent}",
                        table=name,
                        column=column,
                        key=shown,
                    )
                elif parent_owner != store_key:
                    problems.add(
                        "cross_store_fk",
                        f"points to a row of {parent} that belongs to another store",
                        table=name,
                        column=column,
                        key=shown,
                    )
