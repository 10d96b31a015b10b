"""The plan of an import, and every problem that stops it, found before anything is written.

:func:`build_plan` reflects the source, resolves each mapped table's columns (:mod:`.source`),
maps each source store key to a tenantry store, then reads every mapped row once: it counts the
rows each store would get per table and reports rows whose store key matches no store
(orphans), values that do not fit their tenant column, and foreign keys that point to no row or
to another store's row. ``tenantry import shared --dry-run`` prints this plan; a real import
refuses to start while it has problems.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, Engine, ForeignKeyConstraint, Table, select
from sqlalchemy.orm import Session

from tenantry.db.copy import normalise
from tenantry.db.engines import connect
from tenantry.db.master.models import DatabaseStatus, Operation, OperationKind, OperationStatus
from tenantry.db.master.models import Store as MasterStore
from tenantry.db.schemas import SchemaSpec
from tenantry.imports.mapping import Mapping
from tenantry.imports.source import (
    BadValue,
    SourceTable,
    column_rules,
    compatible,
    key_columns,
    key_of,
    kind_of,
    reflect_tables,
    show_key,
)
from tenantry.services import stores as store_service

#: Example keys kept per problem.
EXAMPLES = 5


@dataclass
class Problem:
    """One thing wrong with the mapping or the data, with where and some example keys."""

    kind: str
    message: str
    table: str | None = None
    column: str | None = None
    examples: list[str] = field(default_factory=list)
    count: int = 0
    #: What is wrong with the first example, when each row's case differs (its value).
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The problem as JSON."""
        return {
            "kind": self.kind,
            "table": self.table,
            "column": self.column,
            "message": self.message,
            "rows": self.count,
            "example_keys": self.examples,
            "detail": self.detail,
        }

    def describe(self) -> str:
        """One line for people."""
        where = ".".join(p for p in (self.table, self.column) if p)
        rows = f" ({self.count} rows, e.g. keys {', '.join(self.examples)})" if self.count else ""
        first = f"; first: {self.detail}" if self.detail else ""
        return f"{where + ': ' if where else ''}{self.message}{rows}{first}"


class Problems:
    """Problems collected by (kind, table, column, message)."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, str | None, str | None, str], Problem] = {}

    def add(
        self,
        kind: str,
        message: str,
        *,
        table: str | None = None,
        column: str | None = None,
        key: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Record a problem (once), or one more row of it with ``key``."""
        slot = (kind, table, column, message)
        problem = self._found.setdefault(slot, Problem(kind, message, table, column, detail=detail))
        if key is not None:
            problem.count += 1
            if len(problem.examples) < EXAMPLES:
                problem.examples.append(key)

    def all(self) -> list[Problem]:
        """Every problem, in the order found."""
        return list(self._found.values())


@dataclass
class StoreTarget:
    """Where one source store's rows go."""

    key: Any  # the source's store key
    slug: str
    name: str
    store_id: uuid.UUID | None  # None: --create-stores makes it
    provisioned: bool
    rows: dict[str, int] = field(default_factory=dict)
    #: The import operation that already brought this store's rows, if one succeeded.
    imported_by: uuid.UUID | None = None

    @property
    def total(self) -> int:
        """Rows to copy into this store."""
        return sum(self.rows.values())

    def as_dict(self) -> dict[str, Any]:
        """The store's part of the plan as JSON."""
        return {
            "source_key": normalise(self.key),
            "slug": self.slug,
            "store_id": str(self.store_id) if self.store_id else None,
            "create": self.store_id is None,
            "provision": not self.provisioned,
            "already_imported_by": str(self.imported_by) if self.imported_by else None,
            "rows": self.rows,
            "total_rows": self.total,
        }


@dataclass
class ImportPlan:
    """What an import would copy, where, and what stops it."""

    mapping: Mapping
    tables: dict[str, SourceTable]  # in copy order (parents first)
    stores: list[StoreTarget]
    problems: list[Problem]

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON (``import shared --dry-run --json``)."""
        return {
            "tables": list(self.tables),
            "stores": [s.as_dict() for s in self.stores],
            "total_rows": sum(s.total for s in self.stores),
            "problems": [p.as_dict() for p in self.problems],
            "ok": not self.problems,
        }


# --------------------------------------------------------------------------- structure


def _copy_order(mapping: Mapping, spec: SchemaSpec) -> list[str]:
    """Mapped tables, parents first: the tenant schema's foreign-key order, then each ``via``
    table after its parent."""
    fk_order = [t.name for t in spec.metadata.sorted_tables if t.name in mapping.tables]
    ordered: list[str] = []

    def place(name: str) -> None:
        if name in ordered:
            return
        parent = mapping.tables[name].parent
        if parent is not None:
            place(parent[0])
        ordered.append(name)

    for name in fk_order:
        place(name)
    return ordered


def _resolve_tables(
    source: Engine, mapping: Mapping, spec: SchemaSpec, problems: Problems
) -> dict[str, SourceTable]:
    targets = spec.metadata.tables
    for name in mapping.tables:
        if name not in targets:
            problems.add(
                "unknown_table",
                f"is not a table of the tenant schema {spec.name!r} (it has: "
                + ", ".join(sorted(targets))
                + ")",
                table=name,
            )
    wanted = [t.source for n, t in mapping.tables.items() if n in targets]
    reflected = reflect_tables(source, [*wanted, mapping.stores.table])
    tables: dict[str, SourceTable] = {}
    for name in _copy_order(mapping, spec):
        table_mapping = mapping.tables[name]
        src = reflected.get(table_mapping.source)
        if src is None:
            problems.add(
                "missing_table",
                f"its source table {table_mapping.source!r} is not in the source database",
                table=name,
            )
            continue
        key = key_columns(src, table_mapping)
        if not key:
            problems.add(
                "no_key",
                f"source table {src.name!r} has no primary key: give `key: [column, …]` "
                "(unique columns the copy is ordered and resumed by)",
                table=name,
            )
            continue
        target = targets[name]
        rules = column_rules(target, table_mapping, src)
        _check_columns(name, src, target, table_mapping, rules, problems, set(mapping.tables))
        tables[name] = SourceTable(name, table_mapping, src, target, key, rules)
    for name, st in tables.items():
        parent = st.mapping.parent
        if parent is not None and parent[0] in tables and len(tables[parent[0]].key) != 1:
            problems.add(
                "via_key",
                f"`via` goes through {parent[0]!r}, whose source key has several columns",
                table=name,
            )
    return tables


def _fed_by_source(rules: list[Any], column: str) -> bool:
    """Whether a source column (or a non-null constant or default) feeds tenant ``column``."""
    for rule in rules:
        if rule.target == column:
            return bool(
                rule.source
                or (rule.has_constant and rule.constant is not None)
                or (rule.has_default and rule.default is not None)
            )
    return False


def _check_columns(
    name: str,
    src: Table,
    target: Table,
    table_mapping: Any,
    rules: list[Any],
    problems: Problems,
    mapped_tables: set[str],
) -> None:
    needed = [table_mapping.store_column] if table_mapping.store_column else []
    if table_mapping.parent is not None:
        needed.append(table_mapping.parent[1])
    needed += list(table_mapping.columns.values()) + list(table_mapping.key or [])
    for column in needed:
        if column not in src.c:
            problems.add(
                "missing_column",
                f"source table {src.name!r} has no column {column!r} (it has: "
                + ", ".join(src.c.keys())
                + ")",
                table=name,
                column=column,
            )
    for column in list(table_mapping.columns) + list(table_mapping.transforms):
        if column not in target.c:
            problems.add(
                "unknown_column",
                f"tenant table {name!r} has no column {column!r}",
                table=name,
                column=column,
            )
    mapped = mapped_tables
    for fk in target.foreign_key_constraints:
        parent = fk.referred_table.name
        fed = [c.name for c in fk.columns if _fed_by_source(rules, c.name)]
        if parent not in mapped and parent != name and fed:
            problems.add(
                "unmapped_parent",
                f"refers to tenant table {parent!r}, which this mapping does not fill: map "
                f"{parent} too, or drop the reference (`transforms: {{{fed[0]}: "
                "{constant: null}}`)",
                table=name,
                column=fed[0],
            )
    for column_name, transform in table_mapping.transforms.items():
        source_name = table_mapping.source_column(column_name)
        if transform.kind == "cast" and source_name not in src.c:
            problems.add(
                "missing_column",
                f"`cast` converts source column {src.name}.{source_name}, which is not there",
                table=name,
                column=column_name,
            )
    for rule in rules:
        column = target.c[rule.target]
        given = rule.source is not None or rule.has_constant or rule.has_default or rule.generated
        if not given and not column.nullable:
            problems.add(
                "missing_column",
                f"required tenant column, and source table {src.name!r} has no column "
                f"{rule.target!r}: rename one to it (`columns: {{{rule.target}: …}}`) or give "
                "a constant",
                table=name,
                column=rule.target,
            )
        if rule.source is not None and rule.cast is None:
            source_kind = kind_of(src.c[rule.source])
            if not compatible(source_kind, rule.kind):
                problems.add(
                    "type_mismatch",
                    f"source column {src.name}.{rule.source} holds {source_kind} "
                    f"({src.c[rule.source].type}), the tenant column holds {rule.kind}: add "
                    f"`transforms: {{{rule.target}: {{cast: {rule.kind}}}}}` if the values "
                    "convert",
                    table=name,
                    column=rule.target,
                )


# --------------------------------------------------------------------------- stores


def _resolve_stores(
    source: Engine,
    session: Session,
    mapping: Mapping,
    *,
    only: list[str] | None,
    create: bool,
    problems: Problems,
) -> list[StoreTarget]:
    spec = mapping.stores
    tables = reflect_tables(source, [spec.table])
    table = tables.get(spec.table)
    if table is None:
        problems.add("missing_table", f"the stores table {spec.table!r} is not in the source")
        return []
    columns = [c for c in (spec.key, spec.slug, spec.id, spec.name) if c]
    missing = [c for c in columns if c not in table.c]
    for column in missing:
        problems.add(
            "missing_column",
            f"the stores table {spec.table!r} has no column {column!r}",
            table=spec.table,
            column=column,
        )
    if missing:
        return []
    with connect(source) as conn:
        rows = [dict(r._mapping) for r in conn.execute(select(*(table.c[c] for c in columns)))]
    known = {s.slug: s for s in session.scalars(select(MasterStore))}
    by_id = {s.id: s for s in known.values()}
    targets: list[StoreTarget] = []
    seen: dict[str, Any] = {}
    for row in rows:
        key = row[spec.key]
        shown = show_key([key])
        found: MasterStore | None
        if spec.slug:
            slug = row[spec.slug]
            if slug is None:
                problems.add(
                    "unknown_store",
                    "store has no slug",
                    table=spec.table,
                    column=spec.slug,
                    key=shown,
                )
                continue
            slug = str(slug)
            found = known.get(slug)
        else:
            try:
                found = by_id.get(uuid.UUID(str(row[spec.id])))
            except ValueError:
                found = None
            slug = found.slug if found else str(row[spec.id])
        if only is not None and slug not in only:
            continue
        if slug in seen:
            problems.add(
                "duplicate_store",
                f"two source stores map to the tenantry store {slug!r}",
                table=spec.table,
                key=shown,
            )
            continue
        seen[slug] = key
        name = str(row[spec.name]) if spec.name and row[spec.name] else slug
        if found is None:
            if spec.id or not create:
                problems.add(
                    "unknown_store",
                    "maps to no tenantry store: create it (`tenantry stores create`) or "
                    "pass --create-stores",
                    table=spec.table,
                    key=f"{shown} → {slug}",
                )
                continue
            try:
                store_service.validate_slug(slug)
            except Exception as exc:
                problems.add("bad_slug", str(exc), table=spec.table, key=f"{shown} → {slug}")
                continue
            targets.append(StoreTarget(key, slug, name, None, provisioned=False))
            continue
        active = found.database_status == DatabaseStatus.ACTIVE and (
            store_service.active_connection(session, found) is not None
        )
        if not active and not create:
            problems.add(
                "not_provisioned",
                f"tenantry store {slug!r} has no active database ({found.database_status}): "
                "provision it first or pass --create-stores",
                table=spec.table,
                key=shown,
            )
            continue
        imported = session.scalar(
            select(Operation.id).where(
                Operation.kind == OperationKind.IMPORT,
                Operation.store_id == found.id,
                Operation.status == OperationStatus.SUCCEEDED,
            )
        )
        targets.append(StoreTarget(key, slug, name, found.id, active, imported_by=imported))
    for slug in only or []:
        if slug not in seen:
            problems.add("unknown_store", f"no source store maps to --stores {slug!r}")
    return targets


# --------------------------------------------------------------------------- data


def _foreign_keys(target: Table, tables: dict[str, SourceTable]) -> list[ForeignKeyConstraint]:
    """The tenant table's single-column foreign keys into mapped tables."""
    return [
        fk
        for fk in target.foreign_key_constraints
        if fk.referred_table.name in tables and len(fk.columns) == 1
    ]


def _target_key(target: Table, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(normalise(row[c.name]) for c in target.primary_key.columns)


def _check_data(
    source: Engine,
    tables: dict[str, SourceTable],
    targets: list[StoreTarget],
    all_keys: set[Any],
    problems: Problems,
) -> None:
    """One pass over every mapped row: counts per store, orphans, bad values, foreign keys."""
    chosen = {normalise(t.key): t for t in targets}
    known = {normalise(k) for k in all_keys}
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
                select(*st.source_columns, *extra)
            )
            for row_ in result:
                row = dict(row_._mapping)
                shown = show_key(key_of(st, row))
                if st.mapping.store_column is not None:
                    store_key = normalise(row[path])
                    if store_key not in known:
                        problems.add(
                            "orphan",
                            f"store key in {st.table.name}.{path} matches no store",
                            table=name,
                            column=path,
                            key=shown,
                        )
                        continue
                else:
                    parent = (st.mapping.parent or ("", ""))[0]
                    store_key = source_keys.get(parent, {}).get(normalise(row[path]))
                    if store_key is None:
                        problems.add(
                            "orphan",
                            f"{st.table.name}.{path} points to no row of {parent} "
                            "(its store cannot be known)",
                            table=name,
                            column=path,
                            key=shown,
                        )
                        continue
                by_source[normalise(row[st.key[0].name])] = store_key
                try:
                    converted = st.convert(row)
                except BadValue as exc:
                    problems.add(
                        "bad_value",
                        exc.reason,
                        table=name,
                        column=exc.column,
                        key=shown,
                        detail=f"{shown}: {exc.detail}",
                    )
                    continue
                for rule in st.rules:
                    if converted[rule.target] is None and not st.target.c[rule.target].nullable:
                        problems.add(
                            "null_value",
                            "is empty in the source, and the tenant column requires a value",
                            table=name,
                            column=rule.target,
                            key=shown,
                        )
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
    for target in targets:
        for name in tables:
            target.rows.setdefault(name, 0)


def build_plan(
    source: Engine,
    session: Session,
    mapping: Mapping,
    spec: SchemaSpec,
    *,
    only: list[str] | None = None,
    create_stores: bool = False,
) -> ImportPlan:
    """The plan of importing ``source`` through ``mapping``; reads the source and master,
    writes nothing."""
    problems = Problems()
    tables = _resolve_tables(source, mapping, spec, problems)
    targets = _resolve_stores(
        source, session, mapping, only=only, create=create_stores, problems=problems
    )
    stores_table = reflect_tables(source, [mapping.stores.table]).get(mapping.stores.table)
    if stores_table is not None and mapping.stores.key in stores_table.c:
        # The data is checked even when the mapping has problems, so a dry run shows them
        # all at once (type mismatches with the rows whose values do not convert), except
        # in tables whose columns could not be resolved.
        with connect(source) as conn:
            keys = set(conn.scalars(select(stores_table.c[mapping.stores.key])))
        _check_data(source, _checkable(tables, problems), targets, keys, problems)
    return ImportPlan(mapping, tables, targets, problems.all())


#: Problems that leave a table's rows unreadable as mapped.
_UNREADABLE = frozenset({"missing_column", "unknown_column", "via_key", "no_key", "missing_table"})


def _checkable(tables: dict[str, SourceTable], problems: Problems) -> dict[str, SourceTable]:
    """The tables whose rows can be read as mapped (and whose ``via`` parents can)."""
    broken = {p.table for p in problems.all() if p.kind in _UNREADABLE}
    fine: dict[str, SourceTable] = {}
    for name, st in tables.items():  # parents first: a broken parent breaks its children
        parent = st.mapping.parent
        if name in broken or (parent is not None and parent[0] not in fine):
            continue
        fine[name] = st
    return fine
