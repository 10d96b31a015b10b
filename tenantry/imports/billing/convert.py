"""One legacy row into one billing row, or the problems that stop it.

A :class:`Converter` is built once per legacy table from its mapping and the columns the
source table really has (a column the mapping names that is not there is a problem of the
mapping, reported once). Then each row is converted on its own: the same code runs for the
dry-run and for the import, so the import writes exactly what the dry-run checked.

Problems name the legacy table, the column and the problem, never a value: legacy rows may
hold processor secrets and tokens, and a problem is printed. Rows are named by their key.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text

from tenantry.db.types import UTCDateTime
from tenantry.errors import InvalidInput
from tenantry.imports.billing.mapping import TableMapping, Transform
from tenantry.imports.billing.targets import TARGETS, Target, TargetName, derived_id, exponent
from tenantry.services.billing import validation

#: How a value a column cannot take is described, by the column's type.
_KINDS = {
    "UTCDateTime": "a date-time",
    "Boolean": "a boolean",
    "Integer": "an integer",
    "BigInteger": "an integer",
}
#: Columns people write into, where a legacy app may have pasted a card number.
_FREE_TEXT = frozenset({"name", "description", "failure_message"})
#: Example keys kept per problem.
EXAMPLES = 5


@dataclass
class Problem:
    """One kind of problem in one legacy table's column, with how many rows and which."""

    table: str
    column: str | None
    problem: str
    rows: int = 0
    examples: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """As JSON."""
        return {
            "table": self.table,
            "column": self.column,
            "problem": self.problem,
            "rows": self.rows,
            "examples": self.examples,
        }

    def line(self) -> str:
        """One line for people: ``legacy_invoices.currency: bad currency (2 rows: 17, 18)``."""
        where = f"{self.table}.{self.column}" if self.column else self.table
        rows = f"{self.rows} row{'s' if self.rows != 1 else ''}"
        counted = f" ({rows}: {', '.join(self.examples)})" if self.rows else ""
        return f"{where}: {self.problem}{counted}"


class Problems:
    """Problems gathered over a whole source, one entry per (table, column, problem)."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, str | None, str], Problem] = {}

    def add(self, table: str, column: str | None, problem: str, key: str | None = None) -> None:
        """Count ``problem`` (for the row ``key``, when it is about a row)."""
        entry = self._found.setdefault((table, column, problem), Problem(table, column, problem))
        if key is not None:
            entry.rows += 1
            if len(entry.examples) < EXAMPLES:
                entry.examples.append(key)

    def __bool__(self) -> bool:
        return bool(self._found)

    def __len__(self) -> int:
        return len(self._found)

    def all(self) -> list[Problem]:
        """Every problem, in the order first seen."""
        return list(self._found.values())


class RowProblem(Exception):
    """A value of a row that cannot be imported (``column``: the legacy column, if any)."""

    def __init__(self, column: str | None, problem: str) -> None:
        super().__init__(problem)
        self.column = column
        self.problem = problem


@dataclass(frozen=True)
class Converted:
    """A billing row made from a legacy row, and the legacy rows it refers to."""

    key: str
    id: uuid.UUID
    values: dict[str, Any]
    #: (billing table, legacy external id) of each row it refers to.
    refers_to: tuple[tuple[TargetName, str], ...]


@dataclass(frozen=True)
class _Column:
    """Where one billing column's value comes from."""

    name: str
    source: str | None  # the legacy column, or None for a constant or the external id
    transform: Transform | None
    from_key: bool = False


def key_of(value: Any) -> str | None:
    """A legacy id as text (ids of every type derive the same billing id: 7 and "7")."""
    if value is None:
        return None
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return str(int(value))
    if isinstance(value, bytes):
        return value.hex()
    return str(value).strip() or None


def _cast(value: Any, cast: str) -> Any:
    if value is None:
        return None
    try:
        if cast == "str":
            return key_of(value) if not isinstance(value, str) else value
        if cast == "int":
            number = Decimal(str(value).strip())
            if number != number.to_integral_value():
                raise ValueError
            return int(number)
        if cast == "decimal":
            return Decimal(str(value).strip())
        if cast == "bool":
            return _boolean(value)
        return _datetime(value)
    except (ValueError, InvalidOperation, TypeError):
        raise RowProblem(None, f"cannot be cast to {cast}") from None


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "t", "yes", "y"):
        return True
    if text in ("0", "false", "f", "no", "n"):
        return False
    raise ValueError(text)


def _datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    else:
        raise TypeError(type(value).__name__)
    # Legacy timestamps without a zone were written in UTC (the seeds' servers run in UTC).
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("bool")
    if isinstance(value, int):
        return value
    number = Decimal(str(value).strip())
    if number != number.to_integral_value():
        raise ValueError(str(value))
    return int(number)


class Converter:
    """Turns rows of one legacy table into rows of its billing table (see the module)."""

    def __init__(self, source: str, mapping: TableMapping, columns: set[str], app_id: str) -> None:
        self.source = source
        self.mapping = mapping
        self.target: Target = TARGETS[mapping.into]
        self.app_id = app_id
        self.mapping_problems: list[tuple[str | None, str]] = []
        present = {c.lower(): c for c in columns}
        self.external_id = self._present(present, mapping.external_id, "external_id")
        self.links = {
            name: (self.target.links[name], self._present(present, column, f"links.{name}"))
            for name, column in mapping.links.items()
        }
        self.plan = self._plan(present)

    def _present(self, present: dict[str, str], column: str, role: str) -> str:
        found = present.get(column.lower())
        if found is None:
            self.mapping_problems.append(
                (column, f"the mapping's {role} names a column the source table does not have")
            )
            return column
        return found

    def _plan(self, present: dict[str, str]) -> list[_Column]:
        plan: list[_Column] = []
        for name in self.target.importable():
            transform = self.mapping.transforms.get(name)
            renamed = self.mapping.columns.get(name)
            if transform is not None and transform.is_constant:
                plan.append(_Column(name, None, transform))
            elif renamed is not None:
                plan.append(
                    _Column(name, self._present(present, renamed, f"columns.{name}"), transform)
                )
            elif name.lower() in present:
                plan.append(_Column(name, present[name.lower()], transform))
            elif name in self.target.from_external_id:
                plan.append(_Column(name, None, transform, from_key=True))
            elif transform is not None:
                plan.append(_Column(name, None, transform))
            elif name in self.target.required_columns():
                self.mapping_problems.append(
                    (
                        None,
                        f"nothing fills billing {self.target.name.value}.{name}: map a source "
                        f"column to it (columns: {{{name}: …}}) or give it a default or a constant",
                    )
                )
        # Currency first: amounts in major units are converted with the row's currency.
        plan.sort(key=lambda c: c.name != "currency")
        return plan

    def source_of(self, column: str) -> str:
        """The legacy column billing column ``column`` is made from (its own name when it is
        a constant or has no source), for problems."""
        for planned in self.plan:
            if planned.name == column:
                if planned.from_key:
                    return self.external_id
                return planned.source or column
        return column

    # ------------------------------------------------------------------ rows

    def key(self, row: dict[str, Any]) -> str | None:
        """The row's legacy external id as text."""
        return key_of(row.get(self.external_id))

    def convert(self, row: dict[str, Any], key: str) -> Converted:
        """The billing row for legacy ``row``; raises :class:`RowProblem` for its first problem."""
        values: dict[str, Any] = {}
        for column in self.plan:
            raw = key if column.from_key else row.get(column.source) if column.source else None
            try:
                values[column.name] = self._value(column, raw, values)
            except RowProblem as problem:
                raise RowProblem(column.source or column.name, problem.problem) from None
        refers: list[tuple[TargetName, str]] = []
        for link, source in self.links.values():
            ref = key_of(row.get(source))
            if ref is None:
                if link.required:
                    raise RowProblem(source, f"no {link.to.value[:-1]} id (it is required)")
                values[link.column] = None
                continue
            values[link.column] = derived_id(self.app_id, link.to, ref)
            refers.append((link.to, ref))
        row_id = derived_id(self.app_id, self.target.name, key)
        values["id"] = row_id
        values["app_id"] = self.app_id
        if "metadata" in self.target.table.c:
            values["metadata"] = {"imported_from": {"table": self.source, "id": key}}
        return Converted(key, row_id, values, tuple(refers))

    def _value(self, column: _Column, raw: Any, row: dict[str, Any]) -> Any:
        transform = column.transform
        value = raw
        if transform is not None:
            if transform.is_constant:
                value = transform.constant
            else:
                if transform.values is not None and value is not None:
                    text = key_of(value)
                    if text in transform.values:
                        value = transform.values[text]
                if transform.cast is not None:
                    value = _cast(value, transform.cast)
                if value is None and transform.has_default:
                    value = transform.default
                if transform.major_to_minor and value is not None:
                    value = self._minor(value, str(row.get("currency") or ""))
        return self._checked(column.name, value)

    def _minor(self, value: Any, currency: str) -> int:
        places = exponent(currency)
        try:
            major = Decimal(str(value).strip())
        except InvalidOperation:
            raise RowProblem(None, "not a number") from None
        minor = major.scaleb(places)
        if minor != minor.to_integral_value():
            raise RowProblem(
                None, f"more decimals than {currency or 'its currency'} has ({places})"
            )
        return int(minor)

    def _checked(self, name: str, value: Any) -> Any:
        """``value`` as billing column ``name`` stores it, or the row's problem."""
        column = self.target.table.c[name]
        if value is None:
            if column.nullable:
                return None
            default = column.default
            if default is not None and getattr(default, "is_scalar", False):
                return default.arg  # type: ignore[attr-defined]
            if default is not None and getattr(default, "is_callable", False):
                return default.arg(None)  # type: ignore[attr-defined]
            raise RowProblem(None, "empty (the billing column requires a value)")
        kind = column.type
        try:
            if name == "currency":
                return validation.currency(str(value))
            if name.endswith("_minor"):
                amount = _integer(value)
                if amount < 0:
                    raise RowProblem(None, "negative amount")
                if amount > validation.MAX_AMOUNT_MINOR:
                    raise RowProblem(None, "amount too large")
                return amount
            if name == "status" and self.target.statuses:
                text = str(value)
                if text not in self.target.statuses:
                    allowed = ", ".join(sorted(self.target.statuses))
                    raise RowProblem(
                        None, f"unknown status (allowed: {allowed}; map others with values:)"
                    )
                return text
            if name == "email":
                return validation.email(str(value))
            if (
                name in _FREE_TEXT
                and isinstance(value, str)
                and validation.looks_like_card_number(value)
            ):
                # Seed 002: no raw card data in billing, whatever the legacy app kept.
                raise RowProblem(None, "looks like a card number (raw card data is never stored)")
            if name == "payload" and not isinstance(value, str):
                return json.dumps(value)
            if isinstance(kind, UTCDateTime):
                return _datetime(value)
            if isinstance(kind, Boolean):
                return _boolean(value)
            if isinstance(kind, Integer):
                return _integer(value)
            if isinstance(kind, String | Text):
                string = value if isinstance(value, str) else key_of(value)
                length = getattr(kind, "length", None)
                if length is not None and string is not None and len(string) > length:
                    raise RowProblem(None, f"longer than {length} characters")
                return string
        except InvalidInput:
            what = "bad currency" if name == "currency" else f"invalid {name}"
            raise RowProblem(None, what) from None
        except (ValueError, TypeError, InvalidOperation):
            raise RowProblem(
                None, f"not {_KINDS.get(type(kind).__name__, 'a valid value')}"
            ) from None
        return value
