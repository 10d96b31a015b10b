"""The per-table value checks of an import's plan done by the source's server
(:mod:`.sql_store_checks` runs them): which rows' values SQL cannot vouch for.

Values are judged by Python still, but only on the rows SQL cannot clear: a filter per column
(:meth:`ValueChecks.candidate`) selects the rows whose value might not convert (NULL in a
required column, too long, not 0/1 for a boolean, a JSON string, a value of another storage
class in SQLite, every value of a column converted between kinds SQL cannot vouch for), and
those few rows go through :meth:`SourceTable.convert` exactly as the Python checks do
(:func:`judge_rows`), so the messages and details are the same. A column no source column feeds
gets one value for every row: it is judged once (:meth:`ValueChecks.fixed_value`).

A mapping whose values SQL cannot judge exactly as Python does raises :class:`NotInSql`, and
the Python checks run instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    CHAR,
    Column,
    ColumnElement,
    and_,
    false,
    func,
    not_,
    or_,
)
from sqlalchemy.dialects import postgresql

from tenantry.db.copy import normalise
from tenantry.imports.problems import Problems, converted_or_reported, report_orphan
from tenantry.imports.source import (
    ColumnRule,
    SourceTable,
    _to_kind,
    key_of,
    kind_of,
    show_key,
)

#: Rows with a value that does not convert, per table, beyond which the checks go back to
#: Python (their keys are handed back to the server to leave those rows out).
MAX_BAD_ROWS = 1000

#: Source kind → tenant kinds whose conversion never fails (beyond the storage checks).
_NEVER_FAILS = {
    ("int", "decimal"),
    ("int", "float"),
    ("bool", "int"),
    ("float", "decimal"),
    ("decimal", "float"),
    ("uuid", "str"),
}
#: SQLite storage classes a value of each kind has (any other: Python judges the value).
_SQLITE_CLASSES = {
    "int": ("integer",),
    "bool": ("integer",),
    "str": ("text",),
    "float": ("real", "integer"),
}
#: The text forms of a UUID that certainly convert, and that compare equal only when equal.
UUID_FORMS = {
    "hex": "^[0-9a-f]{32}$",
    "dashed": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
}


class NotInSql(Exception):
    """The mapping needs a comparison SQL cannot make as Python does: check in Python."""


def _glob(pattern: str) -> str:
    """A ``UUID_FORMS`` pattern as an (anchored, case-sensitive) SQLite GLOB."""
    body = pattern.strip("^$")
    return re.sub(r"\[0-9a-f\]\{(\d+)\}", lambda m: "[0-9a-f]" * int(m.group(1)), body)


@dataclass
class ValueChecks:
    """The value filters of the source's server, in its ``dialect`` (postgresql, mysql or
    sqlite)."""

    dialect: str

    def uuid_form(self, column: ColumnElement[Any], form: str) -> ColumnElement[bool]:
        """Whether ``column``'s text is a UUID written in ``form`` (of :data:`UUID_FORMS`)."""
        pattern = UUID_FORMS[form]
        if self.dialect == "postgresql":
            return column.op("~", is_comparison=True)(pattern)
        if self.dialect == "mysql":
            # REGEXP on a binary string is case-sensitive (on text it follows the collation).
            return func.binary(column).op("REGEXP", is_comparison=True)(pattern)
        return column.op("GLOB", is_comparison=True)(_glob(pattern))

    def fixed_value(self, st: SourceTable, rule: ColumnRule) -> None:
        """A column no source column feeds gets one value (or fresh ones): it must convert and
        fit, or every row would have a problem (left to Python)."""
        if rule.generated is not None:
            value = rule.generated()
        else:
            value = rule.constant if rule.has_constant else rule.default
        try:
            if value is not None:
                value = _to_kind(value, rule.kind)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise NotInSql(f"{rule.target}'s value does not convert") from exc
        if value is None and not st.target.c[rule.target].nullable:
            raise NotInSql(f"{rule.target} is left empty")
        if isinstance(value, str) and rule.max_length and len(value) > rule.max_length:
            raise NotInSql(f"{rule.target}'s value is too long")

    def candidate(
        self, st: SourceTable, rule: ColumnRule, column: ColumnElement[Any]
    ) -> ColumnElement[bool] | None:
        """The rows whose value of ``rule``'s source column might not convert or fit (Python
        judges them); None when every value certainly does."""
        assert rule.source is not None
        source = st.table.c[rule.source]
        kind, wanted = kind_of(source), rule.kind
        found: list[ColumnElement[bool]] = []
        present = column.is_not(None)
        if rule.has_default and rule.default is not None:
            self.fixed_value(st, rule)  # a NULL takes the default: it must convert and fit
        elif not st.target.c[rule.target].nullable:
            found.append(column.is_(None))
        if rule.cast is not None and not rule.cast == kind == wanted:
            found.append(present)  # the mapping's cast: Python's conversion decides
        elif kind == "json" and wanted == "json":
            found.append(self._json_text(source, column))
        elif wanted == "str" and kind == "str" and rule.max_length:
            found.append(self._too_long(source, column, rule.max_length))
        elif wanted == "str" and kind == "uuid" and rule.max_length:
            if rule.max_length < 36:
                found.append(present)
        elif kind == "int" and wanted == "bool":
            found.append(column.not_in([0, 1]))
        elif kind == "str" and wanted == "uuid":
            found.append(and_(present, not_(or_(*(self.uuid_form(column, f) for f in UUID_FORMS)))))
        elif (
            not (kind == wanted and kind != "unknown")
            and (kind, wanted) not in _NEVER_FAILS
            and wanted != "unknown"  # kept as it is: nothing to convert
        ):
            found.append(present)
        if self.dialect == "sqlite" and kind in _SQLITE_CLASSES:
            found.append(and_(present, func.typeof(column).not_in(_SQLITE_CLASSES[kind])))
        return or_(*found) if found else None

    def _json_text(self, source: Column[Any], column: ColumnElement[Any]) -> ColumnElement[bool]:
        """The JSON values that are strings (Python parses them again, and may fail)."""
        if self.dialect == "postgresql":
            typeof = (
                func.jsonb_typeof if isinstance(source.type, postgresql.JSONB) else func.json_typeof
            )
            return typeof(column) == "string"
        if self.dialect == "mysql":
            return func.json_type(column) == "STRING"
        return or_(func.json_valid(column) == 0, func.json_type(column) == "text")

    def _too_long(
        self, source: Column[Any], column: ColumnElement[Any], limit: int
    ) -> ColumnElement[bool]:
        if self.dialect == "postgresql" and isinstance(source.type, CHAR):
            # Read padded to its length: every value is that long.
            return column.is_not(None) if (source.type.length or 1) > limit else false()
        if self.dialect == "sqlite":
            return func.length(column) > limit
        return func.char_length(column) > limit


def judge_rows(
    st: SourceTable,
    path: str,
    rows: Iterable[dict[str, Any]],
    store_key_label: str,
    problems: Problems,
    bad: list[tuple[tuple[Any, ...], Any]],
) -> None:
    """Judge in Python the rows of ``st`` SQL could not clear (in key order, each with its
    store key under ``store_key_label``, NULL for an orphan of store path ``path``): orphans
    and values that do not convert into ``problems``, and the key and store key of each row
    whose values do not convert into ``bad``; raises :class:`NotInSql` past
    :data:`MAX_BAD_ROWS` of them."""
    for row in rows:
        store_key = row.pop(store_key_label)
        key = key_of(st, row)
        shown = show_key(key)
        if store_key is None:
            report_orphan(problems, st, path, shown)
            continue
        if converted_or_reported(problems, st, row, shown) is None:
            bad.append((tuple(key), normalise(store_key)))
            if len(bad) > MAX_BAD_ROWS:
                raise NotInSql(f"more than {MAX_BAD_ROWS} rows of {st.name} do not convert")
