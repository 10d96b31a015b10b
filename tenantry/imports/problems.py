"""Problems an import's checks find: what is wrong, where (table, column), how many rows and
some example keys, collected once per kind of problem and place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tenantry.imports.source import SourceTable

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

    def extend(self, other: Problems) -> None:
        """Add ``other``'s problems (found after these)."""
        for slot, problem in other._found.items():
            self._found.setdefault(slot, problem)

    def all(self) -> list[Problem]:
        """Every problem, in the order found."""
        return list(self._found.values())


def report_orphan(problems: Problems, st: SourceTable, path: str, shown: str) -> None:
    """A row of ``st`` whose store cannot be known, through its store column or ``via``."""
    if st.mapping.store_column is not None:
        message = f"store key in {st.table.name}.{path} matches no store"
    else:
        parent = (st.mapping.parent or ("", ""))[0]
        message = f"{st.table.name}.{path} points to no row of {parent} (its store cannot be known)"
    problems.add("orphan", message, table=st.name, column=path, key=shown)


def converted_or_reported(
    problems: Problems, st: SourceTable, row: dict[str, Any], shown: str
) -> dict[str, Any] | None:
    """Source ``row`` as tenant values, its NULLs where the tenant requires a value reported;
    None (reported) when a value does not convert or fit."""
    from tenantry.imports.source import BadValue

    try:
        converted = st.convert(row)
    except BadValue as exc:
        detail = f"{shown}: {exc.detail}"
        problems.add(
            "bad_value", exc.reason, table=st.name, column=exc.column, key=shown, detail=detail
        )
        return None
    for rule in st.rules:
        if converted[rule.target] is None and not st.target.c[rule.target].nullable:
            problems.add(
                "null_value",
                "is empty in the source, and the tenant column requires a value",
                table=st.name,
                column=rule.target,
                key=shown,
            )
    return converted
