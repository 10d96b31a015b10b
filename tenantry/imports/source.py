"""Reading a shared source database through an import mapping (only reading, ever).

The source's tables are reflected (tenantry did not create them); each mapped table becomes a
:class:`SourceTable`: the reflected table, the key the copy is ordered and resumed by, the rule
that fills each tenant column, and the filter that selects one store's rows (its own store
column, or its parent's through ``via``). Rows are read in key order, a batch at a time
(:func:`store_batches`), and converted to the tenant table's values (:meth:`SourceTable.convert`)
the same way for the dry run, the copy and the verification.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    Engine,
    MetaData,
    PrimaryKeyConstraint,
    Select,
    String,
    Table,
    UniqueConstraint,
    and_,
    any_,
    func,
    inspect,
    select,
    tuple_,
)
from sqlalchemy.exc import NoSuchTableError
from sqlalchemy.types import TypeDecorator

from tenantry.db.copy import normalise
from tenantry.db.engines import connect
from tenantry.imports.mapping import Mapping, TableMapping

# --------------------------------------------------------------------------- value types

#: The value kinds the checks compare (a column's Python type, by name).
_KINDS: dict[type, str] = {
    bool: "bool",  # before int: bool is an int subclass
    int: "int",
    float: "float",
    Decimal: "decimal",
    str: "str",
    uuid.UUID: "uuid",
    datetime: "datetime",
    date: "date",
    dict: "json",
    list: "json",
    bytes: "bytes",
}
#: Source kind → target kinds it feeds without a ``cast`` (each value still checked).
_COMPATIBLE: dict[str, set[str]] = {
    "int": {"int", "bool", "decimal", "float"},
    "bool": {"bool", "int"},
    "float": {"float", "decimal"},
    "decimal": {"decimal", "float", "int"},
    "str": {"str", "uuid"},
    "uuid": {"uuid", "str"},
    "datetime": {"datetime"},
    "date": {"date"},
    "json": {"json"},
    "bytes": {"bytes"},
}


def kind_of(column: Column[Any]) -> str:
    """What kind of value ``column`` holds (``str``, ``int``, ``uuid``, ``json``…)."""
    type_ = column.type
    if isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance  # GUID → Uuid, UTCDateTime → DateTime
    try:
        python_type = type_.python_type
    except NotImplementedError:
        return "unknown"
    for base, name in _KINDS.items():
        if issubclass(python_type, base):
            return name
    return "unknown"


def compatible(source_kind: str, target_kind: str) -> bool:
    """Whether a ``source_kind`` column may feed a ``target_kind`` column without a cast."""
    if "unknown" in (source_kind, target_kind):
        return True  # nothing to compare: each value is still converted and checked
    return target_kind in _COMPATIBLE.get(source_kind, {source_kind})


class BadValue(ValueError):
    """A source value that does not fit its tenant column."""

    def __init__(self, column: str, reason: str, detail: str) -> None:
        super().__init__(f"{column}: {reason} ({detail})")
        self.column = column
        self.reason = reason  # the same for every such value: problems are grouped by it
        self.detail = detail  # this value's own


#: Values already of their column's kind, used as they are (the common case, kept cheap).
#: Not times: a naive one is made UTC.
_AS_IS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "float": (float,),
    "decimal": (Decimal,),
    "uuid": (uuid.UUID,),
    "json": (dict, list),
    "date": (date,),
    "datetime": (),
    "bytes": (bytes,),
    "unknown": (),
}


def _to_kind(value: Any, kind: str) -> Any:
    """``value`` as a ``kind`` value; raises ValueError/TypeError when it is not one."""
    if kind == "uuid":
        if isinstance(value, uuid.UUID):
            return value
        if isinstance(value, bytes) and len(value) == 16:
            return uuid.UUID(bytes=value)
        return uuid.UUID(str(value))
    if kind == "int":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, float | Decimal) and value != int(value):
            raise ValueError(f"{value} is not a whole number")
        return int(value)
    if kind == "bool":
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in {"1", "true", "t", "yes", "y"}:
                return True
            if lowered in {"0", "false", "f", "no", "n"}:
                return False
            raise ValueError(f"{value!r} is not a boolean")
        if value not in (0, 1):
            raise ValueError(f"{value!r} is not a boolean (0 or 1)")
        return bool(value)
    if kind == "str":
        return value if isinstance(value, str) else str(value)
    if kind == "float":
        return float(value)
    if kind == "decimal":
        try:
            return Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
    if kind == "datetime":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        elif isinstance(value, date) and not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day)
        if not isinstance(value, datetime):
            raise ValueError(f"{value!r} is not a date and time")
        # A shared database's naive times are taken as UTC, as tenantry stores every time.
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if kind == "date":
        if isinstance(value, str):
            return date.fromisoformat(value)
        return value.date() if isinstance(value, datetime) else value
    if kind == "json":
        return json.loads(value) if isinstance(value, str | bytes) else value
    return value


# --------------------------------------------------------------------------- column rules


@dataclass(frozen=True)
class ColumnRule:
    """How one tenant column gets its value."""

    target: str
    kind: str  # the tenant column's value kind
    source: str | None = None  # the source column, if one feeds it
    constant: Any = None
    has_constant: bool = False
    default: Any = None
    has_default: bool = False
    cast: str | None = None
    #: Filled by the tenant model's own default (a fresh id, now): not compared in checksums.
    generated: Callable[[], Any] | None = None
    max_length: int | None = None

    @property
    def hashed(self) -> bool:
        """Whether the verification compares this column's values."""
        return self.generated is None


def _python_default(column: Column[Any]) -> tuple[bool, Any, Callable[[], Any] | None]:
    """(has a default, its scalar value, its callable) of a tenant model column."""
    default = column.default
    if default is None:
        return False, None, None
    if getattr(default, "is_callable", False):
        function = default.arg  # type: ignore[attr-defined]
        return True, None, lambda: function(None)
    if getattr(default, "is_scalar", False):
        return True, default.arg, None  # type: ignore[attr-defined]
    return False, None, None


def column_rules(target: Table, mapping: TableMapping, source: Table) -> list[ColumnRule]:
    """The rule of every tenant column (unresolvable ones are left for :func:`problems`)."""
    rules = []
    for column in target.columns:
        transform = mapping.transforms.get(column.name)
        kind = kind_of(column)
        length = column.type.length if isinstance(column.type, String) else None
        base: dict[str, Any] = {"target": column.name, "kind": kind, "max_length": length}
        if transform is not None and transform.kind == "constant":
            rules.append(ColumnRule(**base, constant=transform.constant, has_constant=True))
            continue
        source_name = mapping.source_column(column.name)
        present = source_name in source.c
        has_default, scalar, generated = _python_default(column)
        if transform is not None and transform.kind == "default":
            rules.append(
                ColumnRule(
                    **base,
                    source=source_name if present else None,
                    default=transform.default,
                    has_default=True,
                )
            )
        elif present:
            cast = transform.cast if transform is not None else None
            rules.append(ColumnRule(**base, source=source_name, cast=cast))
        elif has_default and generated is None:
            rules.append(ColumnRule(**base, default=scalar, has_default=True))
        elif generated is not None:
            rules.append(ColumnRule(**base, generated=generated))
        else:
            rules.append(ColumnRule(**base))  # NULL: fine only if the column is nullable
    return rules


# --------------------------------------------------------------------------- source tables


@dataclass
class SourceTable:
    """A mapped source table, ready to be read store by store."""

    name: str  # the tenant table it feeds
    mapping: TableMapping
    table: Table  # reflected from the source
    target: Table  # the tenant model's table
    key: list[Column[Any]]  # source columns the copy is ordered and resumed by
    rules: list[ColumnRule]
    #: Select the store's rows through its ``via`` parents' keys as an array (PostgreSQL, the
    #: via column leading an index): see :func:`store_filter`.
    parents_as_array: bool = False

    @property
    def source_columns(self) -> list[Column[Any]]:
        """The source columns read: the key, then every column a rule reads."""
        names = [c.name for c in self.key]
        names += [r.source for r in self.rules if r.source and r.source not in names]
        return [self.table.c[n] for n in names]

    @property
    def hashed_columns(self) -> list[str]:
        """The tenant columns the verification compares."""
        return [r.target for r in self.rules if r.hashed]

    def convert(self, row: dict[str, Any]) -> dict[str, Any]:
        """The tenant row for source ``row``; raises :class:`BadValue` naming the column."""
        values: dict[str, Any] = {}
        for rule in self.rules:
            if rule.has_constant:
                value = rule.constant
            elif rule.generated is not None:
                value = rule.generated()
            else:
                value = row.get(rule.source) if rule.source else None
                if value is None and rule.has_default:
                    value = rule.default
            if value is not None and not (rule.cast is None and type(value) in _AS_IS[rule.kind]):
                try:
                    value = _to_kind(value, rule.cast or rule.kind)
                    if rule.cast and rule.cast != rule.kind:
                        value = _to_kind(value, rule.kind)
                except (ValueError, TypeError, ArithmeticError) as exc:
                    wanted = rule.cast or rule.kind
                    raise BadValue(
                        rule.target,
                        f"values that do not convert to {wanted}",
                        str(exc) or type(exc).__name__,
                    ) from None
            too_long = isinstance(value, str) and len(value) > (rule.max_length or len(value))
            if too_long:
                raise BadValue(
                    rule.target,
                    f"values longer than the column's {rule.max_length} characters",
                    f"{len(value)} characters",
                )
            values[rule.target] = value
        return values


def reflect_tables(engine: Engine, names: Sequence[str]) -> dict[str, Table]:
    """The source tables ``names`` (those that exist), as the source has them."""
    metadata = MetaData()
    found: dict[str, Table] = {}
    with connect(engine) as conn:
        existing = set(inspect(conn).get_table_names())
        for name in dict.fromkeys(names):
            if name not in existing:
                continue
            try:
                found[name] = Table(name, metadata, autoload_with=conn)
            except NoSuchTableError:
                continue
    return found


def key_columns(table: Table, mapping: TableMapping) -> list[Column[Any]]:
    """The source columns the copy is keyed by (the mapping's ``key``, or the primary key)."""
    if mapping.key:
        return [table.c[n] for n in mapping.key if n in table.c]
    return list(table.primary_key.columns)


# --------------------------------------------------------------------------- one store's rows


def store_filter(
    tables: dict[str, SourceTable], mapping: Mapping, name: str, store_key: Any
) -> ColumnElement[bool]:
    """The condition selecting ``store_key``'s rows of mapped table ``name`` (through its
    ``via`` parents: order_items whose order_id is one of the store's orders).

    Through parents, ``order_id IN (SELECT id FROM orders WHERE store_id = …)`` makes
    PostgreSQL hash-join the whole child table for each store (it cannot know how few orders
    one store has), so reading every store reads the table once per store. Where the via
    column leads an index (:attr:`SourceTable.parents_as_array`), the store's parent keys go
    as an array, ``order_id = ANY (ARRAY(SELECT …))``, which the server looks up in that index:
    each store's reads cost its own rows. Without such an index the array would be searched
    row by row: the join stays."""
    source = tables[name]
    if source.mapping.store_column is not None:
        condition: ColumnElement[bool] = source.table.c[source.mapping.store_column] == store_key
        return condition
    parent_name, column = source.mapping.parent or ("", "")
    parent = tables[parent_name]
    inner = select(parent.key[0]).where(store_filter(tables, mapping, parent_name, store_key))
    child = source.table.c[column]
    if source.parents_as_array:
        # ARRAY(subquery) is PostgreSQL's array constructor (`array((SELECT …))` as rendered).
        by_index: ColumnElement[bool] = child == any_(func.array(inner.scalar_subquery()))
        return by_index
    within: ColumnElement[bool] = child.in_(inner)
    return within


def leads_an_index(table: Table, column: str) -> bool:
    """Whether reflected ``table`` has an index (or a primary key or unique constraint, which
    PostgreSQL backs with one) whose first column is ``column``."""
    leading = [list(ix.columns)[:1] for ix in table.indexes]
    leading += [
        list(c.columns)[:1]
        for c in table.constraints
        if isinstance(c, PrimaryKeyConstraint | UniqueConstraint)
    ]
    return any(first and first[0].name == column for first in leading)


def _after(key: list[Column[Any]], last: Sequence[Any]) -> ColumnElement[bool]:
    if len(key) == 1:
        single: ColumnElement[bool] = key[0] > last[0]
        return single
    return tuple_(*key) > tuple_(*last)


def store_query(
    source: SourceTable,
    condition: ColumnElement[bool],
    *,
    after: Sequence[Any] | None,
    limit: int | None,
) -> Select[Any]:
    """One batch of a store's rows in key order, after key ``after``."""
    query = select(*source.source_columns).where(condition)
    if after is not None:
        query = query.where(and_(_after(source.key, after)))
    query = query.order_by(*source.key)
    return query.limit(limit) if limit is not None else query


def store_batches(
    conn: Connection,
    source: SourceTable,
    condition: ColumnElement[bool],
    *,
    after: Sequence[Any] | None,
    batch_rows: int,
) -> Iterator[list[dict[str, Any]]]:
    """A store's rows of ``source`` in key order, ``batch_rows`` at a time, from after key
    ``after`` (a copy resumed after its last committed batch reads exactly the rows that
    follow). One query, streamed: a query per batch would have the server find the store's
    rows again each time (the source need not have an index on store and key together)."""
    query = store_query(source, condition, after=after, limit=None)
    result = conn.execution_options(yield_per=batch_rows).execute(query)
    keys = list(result.keys())  # once: a row's own mapping view costs more than its values
    try:
        for partition in result.partitions():
            yield [dict(zip(keys, r, strict=True)) for r in partition]
    finally:
        result.close()


def key_of(source: SourceTable, row: dict[str, Any]) -> list[Any]:
    """The key values of source ``row``."""
    return [row[c.name] for c in source.key]


def encode_key(values: Sequence[Any]) -> str:
    """A key as JSON text (stored in the tenant database's import cursor)."""
    return json.dumps([normalise(v) for v in values])


def decode_key(source: SourceTable, text: str) -> list[Any]:
    """A key stored by :func:`encode_key`, as values of the source's key columns."""
    decoded = []
    for value, column in zip(json.loads(text), source.key, strict=True):
        kind = kind_of(column)
        decoded.append(value if value is None or kind == "unknown" else _to_kind(value, kind))
    return decoded


def show_key(values: Sequence[Any]) -> str:
    """A key for people: ``42`` or ``(42, 'eu')``."""
    shown = [normalise(v) for v in values]
    return str(shown[0]) if len(shown) == 1 else "(" + ", ".join(map(str, shown)) + ")"


def snapshot(conn: Connection) -> Connection:
    """``conn`` reading in one consistent snapshot where the engine has one."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        return conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    if dialect == "mysql":
        return conn.execution_options(isolation_level="REPEATABLE READ")
    return conn  # SQLite: a read transaction sees one snapshot already
