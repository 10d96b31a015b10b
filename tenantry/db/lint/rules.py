"""The rules: which Alembic operations lose data or break running code, and what raw SQL does."""

from __future__ import annotations

import re
from typing import Any

from alembic.operations import ops
from sqlalchemy.engine import Dialect

from tenantry.db.lint.findings import Finding
from tenantry.db.lint.narrowing import narrowing, render, unwrap


def _name(schema: str | None, table: str) -> str:
    return f"{schema}.{table}" if schema else table


class Linter:
    """The rules for Alembic operations, applied in revision order (it remembers the tables
    the revisions so far created)."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        # Tables created by the revisions seen so far: they hold no rows yet, so a NOT NULL
        # column added to them needs no value for existing rows.
        self.created: set[tuple[str | None, str]] = set()

    def check(self, revision: str, operation: ops.MigrateOperation) -> list[Finding]:
        """The findings of one operation of ``revision``."""
        if isinstance(operation, ops.CreateTableOp):
            self.created.add((operation.schema, operation.table_name))
        elif isinstance(operation, ops.DropTableOp):
            self.created.discard((operation.schema, operation.table_name))
            table = _name(operation.schema, operation.table_name)
            return [
                Finding(
                    revision,
                    "drop_table",
                    operation.table_name,
                    None,
                    f"drop_table removes table {table} and every row in it.",
                    True,
                )
            ]
        elif isinstance(operation, ops.DropColumnOp):
            table = _name(operation.schema, operation.table_name)
            return [
                Finding(
                    revision,
                    "drop_column",
                    operation.table_name,
                    operation.column_name,
                    f"drop_column removes column {table}.{operation.column_name} and the value "
                    "every row holds in it.",
                    True,
                )
            ]
        elif isinstance(operation, ops.RenameTableOp):
            if (operation.schema, operation.table_name) in self.created:
                self.created.add((operation.schema, operation.new_table_name))
            table = _name(operation.schema, operation.table_name)
            return [
                Finding(
                    revision,
                    "rename_table",
                    operation.table_name,
                    None,
                    f"rename_table renames {table} to {operation.new_table_name}, so code still "
                    f"running against {table} fails until it is redeployed.",
                    True,
                )
            ]
        elif isinstance(operation, ops.AlterColumnOp):
            return self._check_alter(revision, operation)
        elif isinstance(operation, ops.AddColumnOp):
            return self._check_add(revision, operation)
        elif isinstance(operation, ops.ExecuteSQLOp):
            return [check_sql(revision, operation.sqltext)]
        return []

    def _check_add(self, revision: str, operation: ops.AddColumnOp) -> list[Finding]:
        column = operation.column
        # Identity and computed columns are filled in for existing rows by the database.
        fills_itself = column.server_default is not None or (
            column.identity is not None or column.computed is not None
        )
        if (
            column.nullable
            or fills_itself
            or (operation.schema, operation.table_name) in self.created
        ):
            return []
        table = _name(operation.schema, operation.table_name)
        return [
            Finding(
                revision,
                "add_not_null_column",
                operation.table_name,
                column.name,
                f"add_column adds {table}.{column.name} as NOT NULL without a server_default, "
                "so it fails on a table with rows, which have no value for it (add a "
                "server_default, or add it nullable and backfill first).",
                True,
            )
        ]

    def _check_alter(self, revision: str, operation: ops.AlterColumnOp) -> list[Finding]:
        table, column = operation.table_name, operation.column_name
        where = f"{_name(operation.schema, table)}.{column}"
        findings: list[Finding] = []
        if operation.modify_name is not None and operation.modify_name != column:
            findings.append(
                Finding(
                    revision,
                    "rename_column",
                    table,
                    column,
                    f"alter_column renames {where} to {operation.modify_name}, so code still "
                    f"using {column} fails until it is redeployed.",
                    True,
                )
            )
        if operation.modify_type is not None:
            new = unwrap(operation.modify_type)
            new_name = render(new, self.dialect)
            reason: str | None = None
            if operation.existing_type is None:
                reason = (
                    f"changes {where} to {new_name} without existing_type=, so the old type is "
                    "unknown and narrowing (values truncated, rounded or rejected) cannot be "
                    "ruled out; pass existing_type= to the alter_column call"
                )
            else:
                old = unwrap(operation.existing_type)
                why = narrowing(old, new)
                if why is not None:
                    old_name = render(old, self.dialect)
                    reason = f"changes {where} from {old_name} to {new_name}, which {why}"
            if reason is not None:
                findings.append(
                    Finding(revision, "narrow_type", table, column, f"alter_column {reason}.", True)
                )
        if operation.modify_nullable is False and operation.existing_nullable is not False:
            findings.append(
                Finding(
                    revision,
                    "set_not_null",
                    table,
                    column,
                    f"alter_column makes {where} NOT NULL, which fails or needs a backfill if any "
                    "row holds NULL.",
                    True,
                )
            )
        return findings


#: Parts of SQL that mention a destructive keyword without destroying anything.
_HARMLESS_SQL = re.compile(
    r"'(?:[^']|'')*'"  # string literals
    r"|--[^\n]*"  # line comments
    r"|/\*.*?\*/"  # block comments
    r"|\bon\s+(?:delete|update)\b"  # foreign key actions
    r"|\bdrop\s+not\s+null\b",  # relaxing a constraint loses nothing
    re.IGNORECASE | re.DOTALL,
)
_DESTRUCTIVE_SQL = re.compile(r"\b(drop|truncate|delete)\b", re.IGNORECASE)
_SQL_TABLE = re.compile(
    r"\b(?:drop\s+table(?:\s+if\s+exists)?|truncate(?:\s+table)?(?:\s+only)?|delete\s+from"
    r"|alter\s+table(?:\s+if\s+exists)?(?:\s+only)?)\s+([\w.\"]+)",
    re.IGNORECASE,
)
_SQL_COLUMN = re.compile(r"\bdrop\s+column(?:\s+if\s+exists)?\s+([\w\"]+)", re.IGNORECASE)
_SQL_EFFECT = {
    "drop": "drops database objects and the data in them",
    "truncate": "empties tables",
    "delete": "deletes rows",
}


def _sql_text(sqltext: Any) -> str:
    try:
        return str(sqltext)  # compiles SQLAlchemy constructs (sa.delete(...), ...) to SQL
    except Exception:  # a construct the default dialect cannot render
        return ""


def check_sql(revision: str, sqltext: Any) -> Finding:
    """A finding for raw SQL: destructive when it drops, truncates or deletes, else a note
    that it was not checked."""
    sql = _sql_text(sqltext)
    excerpt = " ".join(sql.split())
    if len(excerpt) > 100:
        excerpt = excerpt[:97] + "..."
    cleaned = _HARMLESS_SQL.sub(" ", sql)
    keyword = _DESTRUCTIVE_SQL.search(cleaned)
    if keyword is None:
        return Finding(
            revision,
            "raw_sql",
            None,
            None,
            f"raw SQL not checked: review `{excerpt}` by hand, as the linter cannot tell what it "
            "does to data.",
            False,
        )
    table_match = _SQL_TABLE.search(cleaned)
    column_match = _SQL_COLUMN.search(cleaned)
    table = table_match.group(1).replace('"', "").rsplit(".", 1)[-1] if table_match else None
    column = column_match.group(1).replace('"', "") if column_match else None
    target = f" on {table}{f'.{column}' if column else ''}" if table else ""
    effect = _SQL_EFFECT[keyword.group(1).lower()]
    return Finding(
        revision,
        "raw_sql",
        table,
        column,
        f"raw SQL `{excerpt}` runs {keyword.group(1).upper()}{target}, which {effect}.",
        True,
    )
