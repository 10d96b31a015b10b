"""Recovered rows written out for review: INSERT statements for the live database's
dialect, or CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import date, datetime, time
from typing import IO, Any

from sqlalchemy import JSON, Column, Dialect, String, literal
from sqlalchemy.exc import CompileError
from sqlalchemy.types import TypeDecorator, TypeEngine

from tenantry.errors import Conflict, InvalidInput
from tenantry.services.backups.recovery import FORMATS, RowRecovery


def _json_type(type_: TypeEngine[Any]) -> JSON | None:
    if isinstance(type_, TypeDecorator):
        return _json_type(type_.impl_instance)
    return type_ if isinstance(type_, JSON) else None


def _literal(column: Column[Any], value: Any, dialect: Dialect) -> str:
    """``value`` of ``column`` as a SQL literal for ``dialect``."""
    type_: TypeEngine[Any] = column.type
    json_type = _json_type(type_)
    if json_type is not None:
        # SQLAlchemy has no literal renderer for JSON: the document as a string literal.
        # None is SQL NULL only where the type says so, JSON 'null' otherwise (as on insert).
        if value is None and json_type.none_as_null:
            return "NULL"
        value, type_ = json.dumps(value), String()
    elif value is None:
        return "NULL"
    elif isinstance(value, bytes | bytearray | memoryview):
        hexed = bytes(value).hex()
        return f"'\\x{hexed}'::bytea" if dialect.name == "postgresql" else f"X'{hexed}'"
    try:
        return str(
            literal(value, type_).compile(dialect=dialect, compile_kwargs={"literal_binds": True})
        )
    except CompileError:
        raise Conflict(
            f"column {column.table.name}.{column.name} ({column.type}) cannot be written as a "
            f"SQL literal for {dialect.name}.",
            "Use --format csv to review the rows, or --apply to insert them directly.",
        ) from None


def insert_statements(recovery: RowRecovery) -> Iterator[str]:
    """One INSERT statement per missing row, with literal values, for the live database."""
    table, dialect = recovery.table, recovery.dialect
    quote = dialect.identifier_preparer
    # Written out rather than compiled from insert(): SQLAlchemy would add RETURNING for a
    # primary key given as an expression, which is noise in a file for review.
    columns = ", ".join(quote.format_column(c) for c in table.columns)
    head = f"INSERT INTO {quote.format_table(table)} ({columns}) VALUES "
    for row in recovery.rows:
        values = ", ".join(_literal(c, row[c.key], dialect) for c in table.columns)
        yield f"{head}({values})"


def write_sql(recovery: RowRecovery, out: IO[str]) -> None:
    """The missing rows as a SQL script for the live database's client, in one transaction."""
    where = " ".join((recovery.where or "").split())
    out.write(
        f"-- {recovery.missing} row(s) of {recovery.table.name} in backup {recovery.backup_id} "
        f"(taken {recovery.backup_taken_at.isoformat(timespec='seconds')})\n"
        f"-- missing from {recovery.scope} ({recovery.dialect.name})"
        + (f", filtered by: {where}" if where else "")
        + "\n-- Review, then run it on that database (or use --apply).\n"
    )
    out.write("BEGIN;\n")
    for statement in insert_statements(recovery):
        out.write(statement + ";\n")
    out.write("COMMIT;\n")


def csv_value(column: Column[Any], value: Any) -> str:
    """A value as CSV text: empty for NULL, JSON for JSON columns, ISO 8601 for times."""
    if value is None:
        return ""
    if _json_type(column.type) is not None:
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)


def write_csv(recovery: RowRecovery, out: IO[str]) -> None:
    """The missing rows as CSV: a header of column names, then one line per row."""
    writer = csv.writer(out, lineterminator="\n")
    columns = list(recovery.table.columns)
    writer.writerow([c.name for c in columns])
    for row in recovery.rows:
        writer.writerow([csv_value(c, row[c.key]) for c in columns])


def write_rows(recovery: RowRecovery, out: IO[str], fmt: str) -> None:
    """The missing rows in ``fmt`` (``sql`` or ``csv``)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"--format {fmt!r} is unknown.", "Use --format sql or --format csv.")
    (write_sql if fmt == "sql" else write_csv)(recovery, out)


# --------------------------------------------------------------------------- applying
