"""The data checks of an import's plan done by the source's server, in a few queries per table:
which store each row belongs to, and what follows from it.

What :mod:`tenantry.imports.data_checks` does by reading every mapped row into Python, the source
server does here (PostgreSQL, MySQL/MariaDB, SQLite): each row's store is found with a join (its
own store column against the stores table, or its ``via`` parent's store), orphans are the rows
left without one, counts per store are a ``GROUP BY``, and foreign keys are checked by joining
each row to the row it points to (none: dangling; another store's: cross-store). The values SQL
cannot vouch for are picked out and judged by Python (:mod:`.sql_value_checks`).

The report is the same as the Python checks' (the same problems, in the same order, with the
same counts and example keys, rows read in key order by both): a mapping whose comparisons SQL
cannot make exactly as Python makes them (text keys under a case-insensitive collation, UUIDs
kept as text in more than one form, foreign keys into composite keys…) raises
:class:`NotInSql` before anything is reported, and the Python checks run instead.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    ForeignKeyConstraint,
    Select,
    Subquery,
    and_,
    case,
    false,
    func,
    literal_column,
    not_,
    null,
    or_,
    select,
    true,
    tuple_,
    union_all,
)

from tenantry.db.copy import normalise
from tenantry.imports.problems import Problems
from tenantry.imports.source import SourceTable, kind_of, show_key
from tenantry.imports.sql_value_checks import UUID_FORMS, NotInSql, ValueChecks, judge_rows

__all__ = ["STORE_KEY", "NotInSql", "SqlChecks"]

#: The label of a row's store key (NULL: the row has no store) in the checks' queries.
STORE_KEY = "tenantry_store_key"
#: Rows streamed from the server at a time.
FETCH_ROWS = 2000


@dataclass
class _Fk:
    """A foreign key checked in SQL: tenant column, the parent table and the source columns
    compared (the child's, and the parent's own key)."""

    column: str
    parent: str
    child_source: str
    parent_source: str


@dataclass
class SqlChecks:
    """The checks of ``tables`` (copy order, parents first) by the server behind ``conn``."""

    conn: Connection
    tables: dict[str, SourceTable]
    stores_key: Column[Any]
    foreign_keys: dict[str, list[ForeignKeyConstraint]]
    dialect: str = field(init=False)
    values: ValueChecks = field(init=False)
    #: Columns (table, column) whose UUID text must be in one form for exact comparisons.
    _uuid_text: set[tuple[str, str]] = field(init=False, default_factory=set)
    _fks: dict[str, list[_Fk]] = field(init=False, default_factory=dict)
    #: Source keys (and store keys) of the rows whose values do not convert, per table.
    _bad: dict[str, list[tuple[tuple[Any, ...], Any]]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.dialect = self.conn.dialect.name
        if self.dialect not in {"postgresql", "mysql", "sqlite"}:
            raise NotInSql(f"no SQL checks on {self.dialect}")
        self.values = ValueChecks(self.dialect)
        names = list(self.tables)
        for index, (name, st) in enumerate(self.tables.items()):
            if st.mapping.store_column is not None:
                self._same(st.table.c[st.mapping.store_column], self.stores_key, None)
            else:
                parent_name, path = st.mapping.parent or ("", "")
                parent = self.tables[parent_name]
                self._same(st.table.c[path], parent.key[0], None)
            for rule in st.rules:
                if rule.source is None:
                    self.values.fixed_value(st, rule)
            checked = [
                self._fk(st, fk, names.index(fk.referred_table.name) <= index)
                for fk in self.foreign_keys[name]
            ]
            self._fks[name] = [fk for fk in checked if fk is not None]
        self._check_uuid_text()

    # ------------------------------------------------------------------ what SQL can judge

    def _same(self, a: Column[Any], b: Column[Any], to_kind: str | None) -> None:
        """Make sure SQL's ``a = b`` is Python's equality of the two values (raw, or both
        converted to ``to_kind``); raise :class:`NotInSql` when it may not be."""
        kinds = {kind_of(a), kind_of(b)}
        if len(kinds) != 1:
            raise NotInSql(f"{a} and {b} hold different kinds of values")
        (kind,) = kinds
        if kind == "int" and to_kind in (None, "int"):
            return
        if kind == "uuid" and to_kind in (None, "uuid") and self.dialect != "sqlite":
            return  # a native UUID type (PostgreSQL, MariaDB 10.7+): equal as values
        if kind != "str" or to_kind not in (None, "str", "uuid"):
            raise NotInSql(f"{a} is compared as {kind}")
        binary = self.dialect == "postgresql" or (
            self.dialect == "sqlite"
            and not getattr(a.type, "collation", None)
            and not getattr(b.type, "collation", None)
        )
        if to_kind == "uuid" or not binary:
            # Equal as UUIDs (or under a case-insensitive collation) is equal as text only
            # when every value is written one way: checked on the data (_check_uuid_text).
            for column in (a, b):
                assert column.table is not None
                self._uuid_text.add((column.table.name, column.name))
            return

    def _fk(self, st: SourceTable, fk: ForeignKeyConstraint, parent_first: bool) -> _Fk | None:
        """How foreign key ``fk`` is checked in SQL; None when it is never set (a column
        left NULL: Python checks no reference then either)."""
        column = next(iter(fk.columns)).name
        parent = self.tables[fk.referred_table.name]
        rule = next(r for r in st.rules if r.target == column)
        fixed = rule.constant if rule.has_constant else rule.default if rule.has_default else None
        if rule.source is None and rule.generated is None and fixed is None:
            return None
        target_pk = list(parent.target.primary_key.columns)
        referred = next(iter(fk.elements)).column.name
        parent_rule = next((r for r in parent.rules if r.target == referred), None)
        if (
            not parent_first  # Python finds no parent row of a table it has not read yet
            or rule.source is None
            or rule.has_default
            or len(target_pk) != 1
            or target_pk[0].name != referred
            or parent_rule is None
            or parent_rule.source is None
            or parent_rule.has_default
            or parent_rule.cast is not None
            or rule.cast is not None
            or len(parent.key) != 1
            or parent.key[0].name != parent_rule.source
        ):
            raise NotInSql(f"{st.name}.{column} cannot be joined to {parent.name} in SQL")
        self._same(st.table.c[rule.source], parent.key[0], rule.kind)
        return _Fk(column, parent.name, rule.source, parent_rule.source)

    def _check_uuid_text(self) -> None:
        """Every column compared as UUID text holds one form only, the same as the columns
        it is compared with (else SQL's equality would not be Python's)."""
        by_table: dict[str, list[str]] = {}
        for table_name, column in sorted(self._uuid_text):
            by_table.setdefault(table_name, []).append(column)
        sources = {st.table.name: st.table for st in self.tables.values()}
        sources[self.stores_key.table.name] = self.stores_key.table
        forms: dict[tuple[str, str], set[str]] = {}
        for table_name, columns in by_table.items():
            table = sources[table_name]
            probes = [
                func.max(
                    case((and_(c.is_not(None), not_(self.values.uuid_form(c, f))), 1), else_=0)
                )
                for c in (table.c[n] for n in columns)
                for f in UUID_FORMS
            ]
            row = self.conn.execute(select(*probes).select_from(table)).one()
            values = iter(row)
            for name in columns:
                forms[(table_name, name)] = {f for f in UUID_FORMS if not next(values)}
        pairs = self._compared_pairs()
        for a, b in pairs:
            if not forms[a] & forms[b]:
                raise NotInSql(f"{a} and {b} are not written in one UUID form")

    def _compared_pairs(self) -> list[tuple[tuple[str, str], tuple[str, str]]]:
        pairs = []
        stores = (self.stores_key.table.name, self.stores_key.name)
        for name, st in self.tables.items():
            if st.mapping.store_column is not None:
                pairs.append(((st.table.name, st.mapping.store_column), stores))
            else:
                parent_name, path = st.mapping.parent or ("", "")
                parent = self.tables[parent_name]
                pairs.append(((st.table.name, path), (parent.table.name, parent.key[0].name)))
            for fk in self._fks.get(name, []):
                parent = self.tables[fk.parent]
                pairs.append(
                    ((st.table.name, fk.child_source), (parent.table.name, fk.parent_source))
                )
        return [(a, b) for a, b in pairs if a in self._uuid_text and b in self._uuid_text]

    # ------------------------------------------------------------------ queries

    def _rows(self, name: str, columns: list[str]) -> Select[Any]:
        """``columns`` of table ``name``'s source rows, and each row's store key (NULL: an
        orphan): its own store column found in the stores table, or its parent's."""
        st = self.tables[name]
        table = st.table
        picked = [table.c[c] for c in dict.fromkeys(columns)]
        if st.mapping.store_column is not None:
            own = table.c[st.mapping.store_column]
            store = case((own.in_(select(self.stores_key)), own), else_=null())
            return select(*picked, store.label(STORE_KEY))
        parent_name, path = st.mapping.parent or ("", "")
        parent_key = self.tables[parent_name].key[0].name
        parent = self._rows(parent_name, [parent_key]).subquery()
        joined = table.outerjoin(parent, parent.c[parent_key] == table.c[path])
        return select(*picked, parent.c[STORE_KEY].label(STORE_KEY)).select_from(joined)

    def _stream(self, query: Select[Any] | Any) -> Iterator[dict[str, Any]]:
        result = self.conn.execution_options(yield_per=FETCH_ROWS).execute(query)
        keys = list(result.keys())
        try:
            for partition in result.partitions():
                for values in partition:
                    yield dict(zip(keys, values, strict=True))
        finally:
            result.close()

    def _not_bad(self, name: str, rows: Subquery) -> ColumnElement[bool]:
        bad = [key for key, _ in self._bad.get(name, [])]
        if not bad:
            return true()
        columns = [rows.c[c.name] for c in self.tables[name].key]
        if len(columns) == 1:
            return columns[0].not_in([k[0] for k in bad])
        return not_(tuple_(*columns).in_(bad))

    # ------------------------------------------------------------------ the checks

    def run(self, chosen: Mapping[Any, Any], problems: Problems) -> dict[Any, dict[str, int]]:
        """Check every table (problems into ``problems``); rows per table of each store in
        ``chosen`` (normalised store key → anything)."""
        counts: dict[Any, dict[str, int]] = {key: {} for key in chosen}
        for name in self.tables:
            if self._count(name, chosen, counts):
                self._values(name, problems)
                for _, store_key in self._bad.get(name, []):
                    if store_key in counts:
                        counts[store_key][name] -= 1
            self._foreign_keys(name, problems)
        return counts

    def _picked(self, name: str) -> tuple[Subquery, ColumnElement[bool], list[str]]:
        """Table ``name``'s rows with their store key (a subquery), the condition picking the
        rows Python must see (orphans, and values SQL cannot clear), and the source columns
        read (key, mapped columns, store path)."""
        st = self.tables[name]
        path = st.mapping.store_column or (st.mapping.parent or ("", ""))[1]
        columns = list(dict.fromkeys([*(c.name for c in st.source_columns), path]))
        rows = self._rows(name, columns).subquery()
        candidates = [
            found
            for rule in st.rules
            if rule.source is not None
            and (found := self.values.candidate(st, rule, rows.c[rule.source])) is not None
        ]
        picked: ColumnElement[bool] = rows.c[STORE_KEY].is_(None)
        if candidates:
            picked = or_(picked, and_(rows.c[STORE_KEY].is_not(None), or_(*candidates)))
        return rows, picked, columns

    def _values(self, name: str, problems: Problems) -> None:
        """Orphans, and the values Python finds wrong among the rows SQL could not clear."""
        st = self.tables[name]
        path = st.mapping.store_column or (st.mapping.parent or ("", ""))[1]
        rows, picked, columns = self._picked(name)
        query = (
            select(*(rows.c[c] for c in columns), rows.c[STORE_KEY])
            .where(picked)
            .order_by(*(rows.c[c.name] for c in st.key))
        )
        judge_rows(
            st, path, self._stream(query), STORE_KEY, problems, self._bad.setdefault(name, [])
        )

    def _count(
        self, name: str, chosen: Mapping[Any, Any], counts: dict[Any, dict[str, int]]
    ) -> bool:
        """Each chosen store's rows of the table (those with a store; the caller takes off
        those whose values do not convert), and whether any row is an orphan or has a value
        Python must judge (:meth:`_values` then reads them): one pass over the table, where a
        clean one needs no other."""
        rows, picked, _ = self._picked(name)
        flag = func.max(case((picked, 1), else_=0))
        query = select(rows.c[STORE_KEY], func.count(), flag).group_by(rows.c[STORE_KEY])
        found: Counter[Any] = Counter()
        flagged = False
        for store_key, count, any_picked in self.conn.execute(query):
            flagged = flagged or bool(any_picked)
            if store_key is not None:
                found[normalise(store_key)] += int(count)
        for key in chosen:
            counts[key][name] = found.get(key, 0)
        return flagged

    def _foreign_keys(self, name: str, problems: Problems) -> None:
        """Foreign keys to no row (or an orphan's, or one that does not convert) and to
        another store's row, in the order Python finds them: by row, then by key."""
        st = self.tables[name]
        # The foreign key a ``via`` path follows finds its parent by the same join that gave
        # the row its store: only a parent whose values do not convert can be reported there.
        via = st.mapping.parent
        fks = [
            fk
            for fk in self._fks[name]
            if via is None or (fk.parent, fk.child_source) != via or self._bad.get(fk.parent)
        ]
        if not fks:
            return
        key_names = [c.name for c in st.key]
        queries = []
        for index, fk in enumerate(fks):
            child = self._rows(name, [*key_names, fk.child_source]).subquery()
            parent = self._rows(fk.parent, [fk.parent_source]).subquery()
            bad_parents = [k[0] for k, _ in self._bad.get(fk.parent, [])]
            parent_bad = parent.c[fk.parent_source].in_(bad_parents) if bad_parents else false()
            missing = or_(
                parent.c[fk.parent_source].is_(None), parent.c[STORE_KEY].is_(None), parent_bad
            )
            elsewhere = parent.c[STORE_KEY] != child.c[STORE_KEY]
            queries.append(
                select(
                    *(child.c[k].label(f"k{i}") for i, k in enumerate(key_names)),
                    literal_column(str(index)).label("fk"),
                    case(
                        (missing, literal_column("'dangling'")), else_=literal_column("'cross'")
                    ).label("kind"),
                )
                .select_from(
                    child.outerjoin(parent, parent.c[fk.parent_source] == child.c[fk.child_source])
                )
                .where(
                    child.c[STORE_KEY].is_not(None),
                    child.c[fk.child_source].is_not(None),
                    self._not_bad(name, child),
                    or_(missing, elsewhere),
                )
            )
        union = union_all(*queries)
        ordered = union.order_by(
            *(union.selected_columns[f"k{i}"] for i in range(len(key_names))),
            union.selected_columns["fk"],
        )
        for row in self._stream(ordered):
            fk = fks[int(row["fk"])]
            shown = show_key([row[f"k{i}"] for i in range(len(key_names))])
            if row["kind"] == "dangling":
                problems.add(
                    "dangling_fk",
                    f"points to no row of {fk.parent}",
                    table=name,
                    column=fk.column,
                    key=shown,
                )
            else:
                problems.add(
                    "cross_store_fk",
                    f"points to a row of {fk.parent} that belongs to another store",
                    table=name,
                    column=fk.column,
                    key=shown,
                )
