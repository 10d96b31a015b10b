"""The plan of an import, and every problem that stops it, found before anything is written.

:func:`build_plan` reflects the source, resolves each mapped table's columns (:mod:`.source`),
maps each source store key to a tenantry store, then checks the data (:mod:`.data_checks`: by
the source's server where it can, else row by row in Python): it counts the rows each store
would get per table and reports rows whose store key matches no store (orphans), values that do
not fit their tenant column, and foreign keys that point to no row or to another store's row.
``tenantry import shared --dry-run`` prints this plan; a real import refuses to start while it
has problems.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, Table, select
from sqlalchemy.orm import Session

from tenantry.db.copy import normalise
from tenantry.db.engines import connect
from tenantry.db.master.models import DatabaseStatus, Operation, OperationKind, OperationStatus
from tenantry.db.master.models import Store as MasterStore
from tenantry.db.schemas import SchemaSpec
from tenantry.imports.data_checks import check_data
from tenantry.imports.mapping import Mapping
from tenantry.imports.problems import Problem, Problems
from tenantry.imports.source import (
    SourceTable,
    column_rules,
    compatible,
    key_columns,
    kind_of,
    leads_an_index,
    reflect_tables,
    show_key,
)
from tenantry.services import stores as store_service


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
    #: Whether the source's server checked the data (else Python read every row).
    checked_in_sql: bool = False

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
        parent = table_mapping.parent
        by_array = (
            source.dialect.name == "postgresql"
            and parent is not None
            and leads_an_index(src, parent[1])
        )
        tables[name] = SourceTable(name, table_mapping, src, target, key, rules, by_array)
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


def build_plan(
    source: Engine,
    session: Session,
    mapping: Mapping,
    spec: SchemaSpec,
    *,
    only: list[str] | None = None,
    create_stores: bool = False,
    checks_in_sql: bool = True,
) -> ImportPlan:
    """The plan of importing ``source`` through ``mapping``; reads the source and master,
    writes nothing. The data is checked by the source's server where it can be
    (``checks_in_sql``: :mod:`.sql_store_checks`), else in Python."""
    problems = Problems()
    tables = _resolve_tables(source, mapping, spec, problems)
    targets = _resolve_stores(
        source, session, mapping, only=only, create=create_stores, problems=problems
    )
    stores_table = reflect_tables(source, [mapping.stores.table]).get(mapping.stores.table)
    in_sql = False
    if stores_table is not None and mapping.stores.key in stores_table.c:
        # The data is checked even when the mapping has problems, so a dry run shows them
        # all at once (type mismatches with the rows whose values do not convert), except
        # in tables whose columns could not be resolved.
        in_sql = check_data(
            source,
            _checkable(tables, problems),
            targets,
            stores_table.c[mapping.stores.key],
            problems,
            in_sql=checks_in_sql,
        )
    return ImportPlan(mapping, tables, targets, problems.all(), in_sql)


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
