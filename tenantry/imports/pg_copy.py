"""PostgreSQL → PostgreSQL imports done by the servers: a store's rows streamed with ``COPY``
from the source into the tenant database, and verified by checksums each server computes.

When both the source and the tenant database are PostgreSQL (psycopg), a mapped table whose
every column rule can be written in SQL (same or safely castable types, renames, constants,
defaults, fresh UUIDs) is copied without converting a row in Python: the source's
``COPY (SELECT … WHERE <store> AND key > <cursor> ORDER BY key LIMIT n) TO STDOUT`` is streamed
into the tenant's ``COPY … FROM STDIN``, each batch committed with the import cursor (the last
source key copied) in the tenant database's transaction, so a killed copy resumes after the
last committed key exactly as the row-by-row path does. A table whose tenant columns all have
portable types goes in COPY's binary format (:func:`binary_copy`), the others as text.

The verification is the servers' too (:func:`source_checksums`, :func:`target_checksums`: one
query per side for every table): per
table the row count and an order-independent checksum, the sum of each row's 64-bit hash over
the tenant column types (``hash_record_extended`` on PostgreSQL 14+; before, the first 64 bits
of the MD5 of the row's canonical text, ``ROW(…)::text`` in UTC and ISO styles on both sides),
read from the source again (its store rows put through the same SQL) and from the tenant
table. Tables that need Python (other casts, self-referencing trees) and
other engines keep the row-by-row path (:mod:`tenantry.imports.digest`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Select,
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy.dialects.postgresql import BIT
from sqlalchemy.sql.compiler import Compiled
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.types import UserDefinedType

from tenantry.imports.source import ColumnRule, SourceTable, _after, _to_kind

#: Rows per batch (one tenant transaction) when COPY moves them: streamed, never held in
#: memory, so a batch can be much larger than the row-by-row path's.
COPY_BATCH_ROWS = 50_000

#: Session settings the canonical text form depends on: the same on both servers (one round
#: trip, for the current transaction only: pooled connections keep their own).
CANONICAL_SETTINGS = (
    "SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, YMD', true), "
    "set_config('IntervalStyle', 'postgres', true), set_config('extra_float_digits', '1', true), "
    "set_config('bytea_output', 'hex', true)"
)

_INTEGERS = {"smallint", "integer", "bigint"}
_TEXTS = {"text", "character varying"}
_JSONS = {"json", "jsonb"}


def _base(type_name: str) -> str:
    """``character varying(255)`` → ``character varying``."""
    return type_name.split("(", 1)[0].strip()


def _castable(source_type: str, target_type: str) -> bool:
    """Whether a PostgreSQL cast turns ``source_type`` values into ``target_type`` ones exactly
    as the row-by-row path converts them (or fails loudly where it would refuse them)."""
    if source_type == target_type:
        return True
    src, dst = _base(source_type), _base(target_type)
    return (
        (src in _INTEGERS and dst in _INTEGERS)
        or (src in _TEXTS | {"character"} and dst in _TEXTS)
        or (src in _JSONS and dst in _JSONS)
        # A shared database's naive times are UTC (the session's zone here, as in Python).
        or (src == "timestamp without time zone" and dst == "timestamp with time zone")
    )


class _Named(UserDefinedType[Any]):
    """A PostgreSQL type given by name (as ``format_type`` spells it), for casts."""

    cache_ok = True

    def __init__(self, name: str) -> None:
        self.name = name

    def get_col_spec(self, **kw: Any) -> str:
        """The type's name in DDL and casts."""
        return self.name


def column_types(conn: Connection, table: str) -> dict[str, str]:
    """Each column of ``table`` (in the connection's search path) and its exact type."""
    return tables_column_types(conn, [table])[table]


def tables_column_types(conn: Connection, tables: list[str]) -> dict[str, dict[str, str]]:
    """:func:`column_types` of each of ``tables``, read in one query."""
    found: dict[str, dict[str, str]] = {t: {} for t in tables}
    rows = conn.exec_driver_sql(
        "SELECT t.name, a.attname, format_type(a.atttypid, a.atttypmod) "
        "FROM unnest(%(tables)s::text[]) AS t(name) "
        "JOIN pg_attribute a ON a.attrelid = to_regclass(quote_ident(t.name)) "
        "WHERE a.attnum > 0 AND NOT a.attisdropped ORDER BY t.name, a.attnum",
        {"tables": list(dict.fromkeys(tables))},
    )
    for table, name, type_ in rows:
        found[str(table)][str(name)] = str(type_)
    return found


def _constant(rule: ColumnRule, value: Any, type_name: str) -> ColumnElement[Any] | None:
    """``value`` converted as the row-by-row path does, as a typed SQL parameter; None when it
    cannot be one."""
    if value is None:
        return cast(null(), _Named(type_name))
    value = _to_kind(value, rule.kind)
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, dict | list):
        from psycopg.types.json import Json

        value = Json(value)
    elif not isinstance(value, str | int | float | bool) and rule.kind not in {
        "uuid",
        "datetime",
        "date",
        "decimal",
    }:
        return None
    return cast(bindparam(None, value, type_=_Named(type_name)), _Named(type_name))


def _expression(
    st: SourceTable, rule: ColumnRule, source_types: dict[str, str], target_type: str
) -> ColumnElement[Any] | None:
    """The SQL filling tenant column ``rule.target`` from a source row; None when only Python
    can (the table then takes the row-by-row path)."""
    target = st.target.c[rule.target]
    if rule.generated is not None:
        if rule.kind == "uuid":
            return func.gen_random_uuid()
        if target.primary_key or target.unique:
            return None  # a fresh value per row: only Python makes it
        return _constant(rule, rule.generated(), target_type)  # now(), {}: one value will do
    if rule.has_constant:
        return _constant(rule, rule.constant, target_type)
    if rule.source is None:
        return _constant(rule, rule.default if rule.has_default else None, target_type)
    source_type = source_types.get(rule.source)
    if source_type is None or not _castable(source_type, target_type):
        return None
    if rule.cast is not None and source_type != target_type:
        return None  # the mapping's cast says how Python converts: keep Python's meaning
    cast_to = "character varying" if _base(target_type) == "character varying" else target_type
    column: ColumnElement[Any] = st.table.c[rule.source]
    if source_type == target_type:
        value = column
    elif _base(source_type) == "character":
        # Read as Python reads it (and COPY writes it): padded to its length with spaces,
        # where a cast to text would strip them.
        length = int(source_type.partition("(")[2].rstrip(")") or 1)
        value = cast(func.rpad(cast(column, Text), length), _Named(cast_to))
    else:
        value = cast(column, _Named(cast_to))
    if rule.has_default:
        default = _constant(rule, rule.default, target_type)
        if default is None:
            return None
        value = func.coalesce(value, default)
    return value


@dataclass
class SqlTable:
    """A mapped table copied and verified by the servers: the SQL of each tenant column."""

    st: SourceTable
    expressions: list[ColumnElement[Any]]  # one per tenant column, in the table's order
    types: list[str]  # each tenant column's type, as format_type spells it

    @property
    def columns(self) -> list[str]:
        """The tenant columns, in the order the expressions fill them."""
        return [c.name for c in self.st.target.columns]

    def rows(
        self, condition: ColumnElement[bool], *, after: list[Any] | None, limit: int | None
    ) -> Select[Any]:
        """The store's tenant rows after source key ``after``, in key order, ``limit`` of
        them; all of them in no order when ``limit`` is None (nothing to sort for)."""
        query = select(*self.expressions).select_from(self.st.table).where(condition)
        if after is not None:
            query = query.where(and_(_after(self.st.key, after)))
        if limit is None:
            return query
        return query.order_by(*self.st.key).limit(limit)

    def hashed(self) -> list[ColumnElement[Any]]:
        """The expressions of the columns the verification compares."""
        wanted = set(self.st.hashed_columns)
        return [e for c, e in zip(self.columns, self.expressions, strict=True) if c in wanted]

    def hashed_types(self) -> list[str]:
        """The types of the columns the verification compares (in :meth:`hashed`'s order)."""
        wanted = set(self.st.hashed_columns)
        return [t for c, t in zip(self.columns, self.types, strict=True) if c in wanted]


def sql_table(
    st: SourceTable, source_types: dict[str, str], target_types: dict[str, str]
) -> SqlTable | None:
    """``st`` as SQL, or None when a column needs Python (or the table refers to itself: its
    rows must be inserted parents first)."""
    if any(fk.referred_table is st.target for fk in st.target.foreign_key_constraints):
        return None
    expressions, types = [], []
    for rule in st.rules:
        target_type = target_types.get(rule.target)
        if target_type is None:
            return None
        expression = _expression(st, rule, source_types, target_type)
        if expression is None:
            return None
        expressions.append(expression)
        types.append(target_type)
    return SqlTable(st, expressions, types)


def driver_sql(conn: Connection, query: ClauseElement) -> tuple[str, dict[str, Any]]:
    """``query`` as psycopg runs it: its text and its parameters (each through its type)."""
    compiled: Compiled = query.compile(dialect=conn.dialect)
    params = compiled.construct_params() or {}
    binds = getattr(compiled, "binds", {})
    values = {}
    for name, value in params.items():
        bind = binds.get(name)
        process = bind.type.bind_processor(conn.dialect) if bind is not None else None
        values[name] = process(value) if process is not None and value is not None else value
    return compiled.string, values


def canonical(conn: Connection) -> None:
    """Set, for ``conn``'s current transaction, the settings the canonical text depends on."""
    conn.exec_driver_sql(CANONICAL_SETTINGS)


def commit_lazily(conn: Connection) -> None:
    """Let the current transaction's commit return before its WAL reaches the disk (a copied
    batch: a server crash could lose only whole last batches with their cursor rows, resumed
    from the cursor then). :func:`flush` makes them durable before they are verified."""
    conn.exec_driver_sql("SELECT set_config('synchronous_commit', 'off', true)")


def flush(conn: Connection) -> None:
    """Commit a transaction that waits for the disk (it has a transaction id: its commit
    writes and flushes WAL), and so for every lazily committed batch before it."""
    with conn.begin():
        conn.exec_driver_sql("SELECT txid_current()")


#: Bytes of COPY data gathered before they are handed to the tenant's connection: the source
#: sends a message per row, and a write per row would cost a driver round per row again.
WRITE_BYTES = 64 * 1024

#: Tenant column types whose binary COPY form is the same on every PostgreSQL server, whatever
#: the database (no OIDs inside, unlike arrays, enums and extension types): a table whose every
#: column has one is copied in binary, which spares both servers formatting and parsing text
#: (times, UUIDs, numbers). Any other type: the table is copied as text.
_BINARY_SAFE = frozenset(
    {
        "smallint",
        "integer",
        "bigint",
        "numeric",
        "real",
        "double precision",
        "boolean",
        "text",
        "character varying",
        "character",
        "uuid",
        "date",
        "time without time zone",
        "timestamp without time zone",
        "timestamp with time zone",
        "interval",
        "bytea",
        "json",
        "jsonb",
    }
)


def binary_copy(src: Connection, dst: Connection, table: SqlTable) -> bool:
    """Whether ``table`` can be streamed in COPY's binary format from ``src`` to ``dst``:
    every tenant column of a type in :data:`_BINARY_SAFE` (the SQL casts each value to it),
    between servers of the same major version (binary forms are only promised within one)."""
    versions = {(c.dialect.server_version_info or (0,))[0] for c in (src, dst)}
    return len(versions) == 1 and all(_base(t) in _BINARY_SAFE for t in table.types)


def copy_batch(
    src: Connection, dst: Connection, table: SqlTable, query: Select[Any], *, binary: bool = False
) -> tuple[int, int]:
    """Stream ``query``'s rows from the source into the tenant table (in both connections'
    current transactions), in COPY's binary format when ``binary`` (see :func:`binary_copy`);
    (rows, bytes) copied."""
    statement, params = driver_sql(src, query)
    quote = dst.dialect.identifier_preparer.quote
    options = " (FORMAT BINARY)" if binary else ""
    into = (
        f"COPY {quote(table.st.target.name)} ({', '.join(quote(c) for c in table.columns)}) "
        f"FROM STDIN{options}"
    )
    reader = src.connection.driver_connection.cursor()  # type: ignore[union-attr]
    writer = dst.connection.driver_connection.cursor()  # type: ignore[union-attr]
    size = 0
    try:
        with (
            reader.copy(f"COPY ({statement}) TO STDOUT{options}", params) as out,
            writer.copy(into) as copy_in,
        ):
            pending = bytearray()
            for chunk in out:  # a row each (binary: the header comes with the first)
                pending += chunk
                if len(pending) >= WRITE_BYTES:
                    size += len(pending)
                    copy_in.write(pending)
                    pending = bytearray()
            if pending:  # the rest (binary: the trailer), passed through as it came
                size += len(pending)
                copy_in.write(pending)
        return max(writer.rowcount, 0), size
    finally:
        reader.close()
        writer.close()


def last_key(
    src: Connection,
    table: SqlTable,
    condition: ColumnElement[bool],
    after: list[Any] | None,
    offset: int,
) -> list[Any]:
    """The source key of the ``offset``-th (0-based) store row after ``after``."""
    query = select(*table.st.key).select_from(table.st.table).where(condition)
    if after is not None:
        query = query.where(and_(_after(table.st.key, after)))
    row = src.execute(query.order_by(*table.st.key).offset(offset).limit(1)).one()
    return list(row)


@dataclass(frozen=True)
class Checksum:
    """A table's row count and order-independent checksum, as one server computed them."""

    rows: int
    total: int  # the sum of the rows' hashes, kept whole (numeric): no overflow, no wrap

    @property
    def hex(self) -> str:
        """The checksum as text (shown in the outcome)."""
        return f"{self.total % 2**80:020x}"


#: How the servers hash each row: PostgreSQL 14+ by its values (``hash_record_extended``,
#: about ten times cheaper than formatting and hashing the row's text), older servers by the
#: MD5 of the row's canonical text. Both sides of a verification use the same.
RECORD_HASH, TEXT_MD5 = "record", "md5"

#: Built-in types PostgreSQL hashes by value the same way on every server (of one byte
#: order), the binary-safe ones but json: hashed as they are. Any other type is hashed as its
#: text: json (no hash), enums (hashed by their OIDs, which differ between databases),
#: extension types.
_HASHED_AS_IS = _BINARY_SAFE - {"json"}


def checksum_method(*conns: Connection) -> str:
    """The row hash every server behind ``conns`` has."""
    versions = [c.dialect.server_version_info or (0,) for c in conns]
    return RECORD_HASH if all(v >= (14,) for v in versions) else TEXT_MD5


def _summed(
    hashed: list[ColumnElement[Any]], types: list[str], query: Select[Any], method: str
) -> Select[Any]:
    """``query``'s rows as (count, sum of each row's 64-bit hash): a changed, missing or extra
    row moves the sum (but for a 2**-64 chance), in any order the server reads them; a bigint
    sum is numeric: no overflow, no wrap."""
    if method == RECORD_HASH:
        values = [
            v if _base(t) in _HASHED_AS_IS else cast(v, Text)
            for v, t in zip(hashed, types, strict=True)
        ]
        row_hash: ColumnElement[Any] = func.hash_record_extended(func.row(*values), 0)
    else:
        row_hash = func.md5(cast(func.row(*hashed), Text))
    inner = query.with_only_columns(row_hash.label("h"), maintain_column_froms=True).subquery()
    as_bigint: ColumnElement[Any] = inner.c.h
    if method != RECORD_HASH:  # the MD5's first 64 bits
        as_bigint = cast(
            cast(literal_column("'x'", Text).concat(func.left(inner.c.h, 16)), BIT(64)),
            BigInteger,
        )
    return select(func.count(), func.coalesce(func.sum(as_bigint), 0)).select_from(inner)


def _checksums(
    conn: Connection,
    parts: list[tuple[list[ColumnElement[Any]], list[str], Select[Any]]],
    method: str | None,
) -> list[Checksum]:
    """The checksum of each of ``parts`` (hashed expressions, their types, the rows' query),
    computed by the server in one statement (the canonical settings set first), compiled
    once per engine: the statement is the same store after store, only its values change."""
    if not parts:
        return []
    method = method or checksum_method(conn)
    sums = [
        _summed(hashed, types, query, method).add_columns(literal_column(str(i)).label("part"))
        for i, (hashed, types, query) in enumerate(parts)
    ]
    canonical(conn)
    found = {
        int(part): Checksum(int(rows), int(total))
        for rows, total, part in conn.execute(sums[0] if len(sums) == 1 else union_all(*sums))
    }
    return [found[i] for i in range(len(parts))]


def _source_part(
    table: SqlTable, condition: ColumnElement[bool]
) -> tuple[list[ColumnElement[Any]], list[str], Select[Any]]:
    query = select(*table.hashed()).select_from(table.st.table).where(condition)
    return table.hashed(), table.hashed_types(), query


def _target_part(table: SqlTable) -> tuple[list[ColumnElement[Any]], list[str], Select[Any]]:
    target = table.st.target
    hashed: list[ColumnElement[Any]] = [target.c[c] for c in table.st.hashed_columns]
    return hashed, table.hashed_types(), select(*hashed).select_from(target)


def source_checksum(
    conn: Connection,
    table: SqlTable,
    condition: ColumnElement[bool],
    method: str | None = None,
) -> Checksum:
    """The checksum of the store's source rows put through ``table``'s SQL (the values the
    copy wrote), computed by the source server (``method``: its own best by default)."""
    return source_checksums(conn, [(table, condition)], method)[0]


def source_checksums(
    conn: Connection,
    tables: list[tuple[SqlTable, ColumnElement[bool]]],
    method: str | None = None,
) -> list[Checksum]:
    """:func:`source_checksum` of each (table, store condition), in one query."""
    return _checksums(conn, [_source_part(t, c) for t, c in tables], method)


def target_checksum(conn: Connection, table: SqlTable, method: str | None = None) -> Checksum:
    """The checksum of every row of the tenant table, computed by its server."""
    return target_checksums(conn, [table], method)[0]


def target_checksums(
    conn: Connection, tables: list[SqlTable], method: str | None = None
) -> list[Checksum]:
    """:func:`target_checksum` of each of ``tables``, in one query."""
    return _checksums(conn, [_target_part(t) for t in tables], method)
