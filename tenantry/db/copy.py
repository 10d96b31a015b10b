"""Copying tables row by row between databases, and content checksums that agree across engines.

A store moving to another server (or from SQLite to a server) is copied logically: the target's
tables are built from the models, then rows are read through the same SQLAlchemy ``Table`` on
both sides, so every value passes through the column's type (UTC times, UUIDs, JSON) and lands
the same on SQLite, PostgreSQL and MySQL/MariaDB.

:func:`table_digest` proves a copy. Each row's values are normalised to one canonical form
(times in UTC ISO 8601, decimals in plain notation, booleans as 0/1, UUIDs as text, JSON as
sorted-key JSON) and hashed with SHA-256; the row hashes are combined by addition modulo
2**256, which does not depend on row order. An ``ORDER BY`` on the primary key would: the same
text keys sort differently under SQLite's binary, PostgreSQL's locale and MariaDB's
``utf8mb4_unicode_ci`` collations.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, Connection, Row, Table, func, select, text
from sqlalchemy.types import JSON, TypeDecorator, TypeEngine

#: Rows per INSERT batch (and per fetch from the source): big enough to amortise round trips,
#: small enough to keep memory and each target transaction modest.
BATCH_ROWS = 2000

_MODULUS = 2**256

#: Called with the number of rows just copied or hashed (not the running total).
RowsCallback = Callable[[int], None]


@dataclass(frozen=True)
class TableDigest:
    """A table's row count and content checksum."""

    table: str
    rows: int
    sha256: str


# --------------------------------------------------------------------------- checksums


def _is_json(type_: TypeEngine[Any]) -> bool:
    if isinstance(type_, JSON):
        return True
    return isinstance(type_, TypeDecorator) and isinstance(type_.impl_instance, JSON)


#: The canonical encoders, made once: ``json.dumps`` with options builds an encoder per call,
#: which showed as a third of an import's verification time.
_ROW_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_JSON_VALUE_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str)


def _aware_iso(value: datetime) -> str:
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat()


def _decimal(value: Decimal) -> str:
    # 1.50, 1.5 and 15E-1 are one number; "f" never switches to exponent notation.
    text_ = format(value.normalize(), "f")
    return "0" if text_ in {"-0", "0"} else text_


def _same(value: Any) -> Any:
    return value


#: The canonical form by exact type: one lookup per value for what drivers return.
_BY_TYPE: dict[type, Callable[[Any], Any]] = {
    type(None): _same,
    str: _same,
    int: _same,
    bool: int,
    datetime: _aware_iso,
    date: date.isoformat,
    time: time.isoformat,
    Decimal: _decimal,
    float: repr,
    uuid.UUID: str,
    bytes: bytes.hex,
}


def normalise(value: Any, *, json_column: bool = False) -> Any:
    """``value`` in a canonical form that is the same whichever engine it was read from."""
    if json_column:
        # JSON null and SQL NULL both read back as None; everything else as canonical JSON.
        return None if value is None else _JSON_VALUE_ENCODER.encode(value)
    exact = _BY_TYPE.get(type(value))
    if exact is not None:
        return exact(value)
    # Subclasses (a str enum, an int subclass, a pendulum datetime …) take the long way.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # before int: bool is an int subclass
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return _aware_iso(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def canonical_row(values: Iterable[Any], json_columns: Iterable[bool]) -> bytes:
    """One row's canonical encoding (what :func:`row_hash` hashes)."""
    canonical = [
        normalise(v, json_column=True) if j else _BY_TYPE.get(type(v), normalise)(v)
        for v, j in zip(values, json_columns, strict=True)
    ]
    return _ROW_ENCODER.encode(canonical).encode()


def row_hash(values: Sequence[Any], json_columns: Sequence[bool]) -> int:
    """One row's SHA-256 as an integer (the unit the table checksum adds up)."""
    return int.from_bytes(hashlib.sha256(canonical_row(values, json_columns)).digest(), "big")


def _batches(conn: Connection, table: Table, batch_rows: int) -> Iterator[Sequence[Row[Any]]]:
    """The table's rows in batches, streamed (server-side cursor where the driver has one)."""
    query = select(*table.columns)
    result = conn.execution_options(yield_per=batch_rows).execute(query)
    try:
        yield from result.partitions()
    finally:
        result.close()


def table_digest(
    conn: Connection,
    table: Table,
    *,
    batch_rows: int = BATCH_ROWS,
    on_rows: RowsCallback | None = None,
) -> TableDigest:
    """The row count and content checksum of ``table`` on ``conn`` (only reads)."""
    json_columns = [_is_json(c.type) for c in table.columns]
    header = json.dumps([table.name, [c.name for c in table.columns]]).encode()
    total, count = 0, 0
    for batch in _batches(conn, table, batch_rows):
        for row in batch:
            total = (total + row_hash(tuple(row), json_columns)) % _MODULUS
        count += len(batch)
        if on_rows is not None:
            on_rows(len(batch))
    final = hashlib.sha256(header + f"|{count}|{total:064x}".encode()).hexdigest()
    return TableDigest(table.name, count, final)


def count_rows(conn: Connection, table: Table) -> int:
    """How many rows ``table`` holds on ``conn``."""
    return int(conn.scalar(select(func.count()).select_from(table)) or 0)


# --------------------------------------------------------------------------- copying


def _self_references(table: Table) -> list[tuple[list[str], list[str]]]:
    """(referencing columns, referenced columns) of each foreign key into ``table`` itself."""
    found: list[tuple[list[str], list[str]]] = []
    for fk in table.foreign_key_constraints:
        if fk.referred_table is table:
            found.append(
                ([c.key for c in fk.columns], [e.column.key for e in fk.elements]),
            )
    return found


def _parents_first(
    rows: list[dict[str, Any]], refs: list[tuple[list[str], list[str]]]
) -> list[dict[str, Any]]:
    """``rows`` reordered so a row comes after the rows it references in its own table (a
    category after its parent): foreign keys are checked row by row as they are inserted."""
    keys = {tuple(r[c] for c in ref) for _, ref in refs for r in rows}
    ordered: list[dict[str, Any]] = []
    placed: set[tuple[Any, ...]] = set()
    pending = rows
    while pending:
        waiting: list[dict[str, Any]] = []
        for row in pending:
            parents = [tuple(row[c] for c in cols) for cols, _ in refs]
            if all(None in p or p not in keys or p in placed for p in parents):
                ordered.append(row)
                placed.update(tuple(row[c] for c in ref) for _, ref in refs)
            else:
                waiting.append(row)
        if len(waiting) == len(pending):  # a cycle: insert as is, the target will say why
            ordered.extend(waiting)
            break
        pending = waiting
    return ordered


def _as_dicts(table: Table, rows: Iterable[Row[Any]]) -> list[dict[str, Any]]:
    keys = [c.key for c in table.columns]
    return [dict(zip(keys, row, strict=True)) for row in rows]


def copy_table(
    source: Connection,
    target: Connection,
    table: Table,
    *,
    batch_rows: int = BATCH_ROWS,
    on_rows: RowsCallback | None = None,
) -> int:
    """Copy every row of ``table`` from ``source`` into the same (empty) table on ``target``,
    in batches of ``batch_rows``, inside the callers' transactions. Returns the rows copied."""
    refs = _self_references(table)
    if refs:
        # A table referencing itself is sorted parent-first in memory (such tables are trees
        # like categories: small), then inserted in batches like any other.
        everything = [row for batch in _batches(source, table, batch_rows) for row in batch]
        ordered = _parents_first(_as_dicts(table, everything), refs)
        chunks = [ordered[i : i + batch_rows] for i in range(0, len(ordered), batch_rows)]
        return _insert_batches(target, table, chunks, on_rows)
    batches = _batches(source, table, batch_rows)
    return _insert_batches(target, table, (_as_dicts(table, b) for b in batches), on_rows)


def _insert_batches(
    target: Connection,
    table: Table,
    chunks: Iterable[list[dict[str, Any]]],
    on_rows: RowsCallback | None,
) -> int:
    copied = 0
    for chunk in chunks:
        if not chunk:
            continue
        target.execute(table.insert(), chunk)
        copied += len(chunk)
        if on_rows is not None:
            on_rows(len(chunk))
    return copied


def reset_sequences(conn: Connection, table: Table) -> None:
    """Move a PostgreSQL sequence past the copied ids, so the next generated id is free.

    Rows copied with their ids do not advance PostgreSQL's sequences (MySQL and SQLite move
    their counters past explicit ids on their own). Runs in the caller's transaction.
    """
    column: Column[Any] | None = table.autoincrement_column
    if column is None or conn.dialect.name != "postgresql":
        return
    quote = conn.dialect.identifier_preparer.quote
    conn.execute(
        text(
            f"SELECT setval(pg_get_serial_sequence(:table, :column), "
            f"COALESCE(MAX({quote(column.name)}), 1), MAX({quote(column.name)}) IS NOT NULL) "
            f"FROM {quote(table.name)}"
        ),
        {"table": table.name, "column": column.name},
    )
