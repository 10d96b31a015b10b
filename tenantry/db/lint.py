"""Destructive-change linter: what pending Alembic revisions would do to data and running code.

No database is needed. Each revision's ``upgrade()`` runs against a recorder standing in for
``alembic.op``: every operation it would perform (plain or inside ``batch_alter_table``) is
collected instead of executed, and then checked against the rules below. The recorder sees the
revision as it would run on PostgreSQL, so branches for other dialects are not followed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, cast

import sqlalchemy as sa
from alembic.operations import BatchOperations, Operations, ops
from alembic.runtime.migration import MigrationContext
from alembic.script import Script
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.engine.mock import MockConnection
from sqlalchemy.types import TypeEngine, to_instance

from tenantry.db import alembic_threads, migrations
from tenantry.db.schemas import SchemaSpec


@dataclass(frozen=True)
class Finding:
    """One operation in a pending revision that deserves a human's attention."""

    revision: str  # the Alembic revision id
    # drop_table, drop_column, narrow_type, set_not_null, add_not_null_column, rename_table,
    # rename_column or raw_sql
    operation: str
    table: str | None
    column: str | None
    detail: str  # one sentence: what is wrong and why it loses data or breaks running code
    destructive: bool  # True: the upgrade is refused unless --allow-destructive

    def __str__(self) -> str:
        return f"{self.revision}: {self.operation}: {self.detail}"


class _BatchRecorder(BatchOperations):
    """What ``op.batch_alter_table`` yields under the linter: records into its parent."""

    def __init__(self, parent: _Recorder, batch: BatchOperations) -> None:
        # Batch operations read the table name and schema from the batch's impl.
        super().__init__(parent.migration_context, impl=batch.impl)
        self._parent = parent

    def invoke(self, operation: ops.MigrateOperation) -> Any:
        """Record ``operation`` with the revision's other operations instead of running it."""
        return self._parent.invoke(operation)

    def get_bind(self) -> Connection:
        """The recording connection of the whole revision."""
        return self._parent.get_bind()


class _Recorder(Operations):
    """Stands in for ``alembic.op``: collects each operation instead of running it."""

    def __init__(self, context: MigrationContext) -> None:
        super().__init__(context)
        self.recorded: list[ops.MigrateOperation] = []

    def invoke(self, operation: ops.MigrateOperation) -> Any:
        """Record ``operation`` instead of running it."""
        self.recorded.append(operation)
        if isinstance(operation, ops.CreateTableOp):
            # A revision may keep the returned Table, e.g. for op.bulk_insert().
            return operation.to_table(self.migration_context)
        return None

    @contextmanager
    def batch_alter_table(
        self, table_name: str, schema: str | None = None, *args: Any, **kwargs: Any
    ) -> Iterator[BatchOperations]:
        """A batch whose operations are recorded one by one and never flushed to a database."""
        # Alembic's own batch, never recreating the table: the recorder takes every operation
        # before it reaches the batch, so the flush on leaving has nothing to run (the other
        # arguments, copy_from and the like, only matter for a flush).
        with super().batch_alter_table(table_name, schema, recreate="never") as batch:
            yield _BatchRecorder(self, batch)

    def get_bind(self) -> Connection:
        """A connection whose statements are recorded like ``op.execute()``."""

        # Offline, Alembic's own bind writes statements straight to the SQL buffer, past
        # invoke(); recording them keeps data changes made through the bind in the checks.
        def execute(statement: Any, *args: Any, **kwargs: Any) -> None:
            self.recorded.append(ops.ExecuteSQLOp(statement))

        return cast(Connection, MockConnection(self.migration_context.dialect, execute))


@dataclass
class _Recording:
    operations: list[ops.MigrateOperation]
    emitted: str  # SQL that reached the migration context's buffer past the recorder
    failure: Exception | None


def _record(script: Script) -> _Recording:
    buffer = io.StringIO()
    recorder = _Recorder(_offline_context(buffer))
    failure: Exception | None = None
    alembic_threads.bind(script)
    with alembic_threads.running(recorder):
        try:
            script.module.upgrade()
        except Exception as exc:  # e.g. reading query results, which an offline run has none of
            failure = exc
    return _Recording(recorder.recorded, buffer.getvalue().strip(), failure)


def _name(schema: str | None, table: str) -> str:
    return f"{schema}.{table}" if schema else table


class _Linter:
    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        # Tables created by the revisions seen so far: they hold no rows yet, so a NOT NULL
        # column added to them needs no value for existing rows.
        self.created: set[tuple[str | None, str]] = set()

    def check(self, revision: str, operation: ops.MigrateOperation) -> list[Finding]:
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
            return [_check_sql(revision, operation.sqltext)]
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
            new = _unwrap(operation.modify_type)
            new_name = _render(new, self.dialect)
            reason: str | None = None
            if operation.existing_type is None:
                reason = (
                    f"changes {where} to {new_name} without existing_type=, so the old type is "
                    "unknown and narrowing (values truncated, rounded or rejected) cannot be "
                    "ruled out; pass existing_type= to the alter_column call"
                )
            else:
                old = _unwrap(operation.existing_type)
                why = _narrowing(old, new)
                if why is not None:
                    old_name = _render(old, self.dialect)
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


def _unwrap(value: Any) -> TypeEngine[Any]:
    # Revisions pass classes (sa.Integer) as often as instances; a TypeDecorator stores its
    # values as its underlying type, which is what narrowing is about.
    type_: TypeEngine[Any] = to_instance(value)
    while isinstance(type_, sa.TypeDecorator):
        type_ = type_.impl_instance
    return type_


def _render(type_: TypeEngine[Any], dialect: Dialect) -> str:
    try:
        return str(type_.compile(dialect=dialect))
    except Exception:  # e.g. an unnamed Enum, which PostgreSQL cannot render
        return repr(type_)


#: Bytes of storage of each integer type, checked most specific first.
_INTEGER_BYTES: tuple[tuple[type[sa.Integer], int], ...] = (
    (sa.BigInteger, 8),
    (sa.SmallInteger, 2),
    (sa.Integer, 4),
)
#: Decimal digits an exact number needs to hold every value of an integer of that many bytes.
_INTEGER_DIGITS = {2: 5, 4: 10, 8: 19}


def _integer_bytes(type_: sa.Integer) -> int:
    return next(size for cls, size in _INTEGER_BYTES if isinstance(type_, cls))


def _mantissa_bits(type_: sa.Float[Any]) -> int:
    if isinstance(type_, sa.REAL) or (type_.precision is not None and type_.precision <= 24):
        return 24
    return 53


def _narrowing(old: TypeEngine[Any], new: TypeEngine[Any]) -> str | None:
    """Why changing a column from ``old`` to ``new`` can lose values, or None if it cannot."""
    if isinstance(old, sa.Enum) or isinstance(new, sa.Enum):
        return _enum_narrowing(old, new)
    if isinstance(old, sa.String) and isinstance(new, sa.String):
        return _string_narrowing(old, new)
    if isinstance(old, sa.Integer) and isinstance(new, sa.Integer):
        before, after = _integer_bytes(old), _integer_bytes(new)
        if after < before:
            return (
                f"narrows {before * 8}-bit integers to {after * 8}-bit ones, so larger values "
                "overflow"
            )
        return None
    if isinstance(old, sa.Integer) and isinstance(new, sa.Float):
        bits = _integer_bytes(old) * 8
        if bits > _mantissa_bits(new):
            return f"cannot hold every {bits}-bit integer exactly, so large values are rounded"
        return None
    if isinstance(old, sa.Integer) and isinstance(new, sa.Numeric):
        needed = _INTEGER_DIGITS[_integer_bytes(old)]
        if new.precision is not None and new.precision - (new.scale or 0) < needed:
            return "leaves too few integer digits for the old values, so larger ones overflow"
        return None
    if isinstance(old, sa.Float) and isinstance(new, sa.Float):
        if _mantissa_bits(new) < _mantissa_bits(old):
            return "lowers the floating-point precision, so values are rounded"
        return None
    if isinstance(old, sa.Numeric) and isinstance(new, sa.Integer):
        return _numeric_to_integer(old, new)
    if isinstance(old, sa.Numeric) and isinstance(new, sa.Numeric):
        if isinstance(old, sa.Float) or isinstance(new, sa.Float):
            return "switches between exact and floating-point numbers, so values are rounded"
        return _numeric_narrowing(old, new)
    if isinstance(old, sa.LargeBinary) and isinstance(new, sa.LargeBinary):
        if new.length is not None and (old.length is None or new.length < old.length):
            return "shortens the binary column, so longer values are truncated or rejected"
        return None
    if isinstance(old, sa.DateTime) and isinstance(new, sa.DateTime):
        if old.timezone and not new.timezone:
            return "drops the time zone of every value"
        return None
    if isinstance(old, sa.DateTime) and isinstance(new, sa.Date):
        return "drops the time of day from every value"
    if isinstance(old, sa.Date) and isinstance(new, sa.DateTime):
        return None
    if isinstance(new, type(old)) or isinstance(old, type(new)):
        return None  # the same kind of type, with no parameters known to narrow it
    return (
        "is an unrelated type, so values may fail to convert and code expecting the old type breaks"
    )


def _enum_narrowing(old: TypeEngine[Any], new: TypeEngine[Any]) -> str | None:
    if isinstance(old, sa.Enum) and isinstance(new, sa.Enum):
        gone = [value for value in old.enums if value not in new.enums]
        if gone:
            return f"removes the values {', '.join(gone)}, so rows holding them fail to convert"
        return None
    if isinstance(old, sa.Enum) and isinstance(new, sa.String):
        longest = max((len(value) for value in old.enums), default=0)
        if isinstance(new, sa.Text) or new.length is None or new.length >= longest:
            return None
        return "is shorter than the longest enum value, so such values are truncated or rejected"
    if isinstance(new, sa.Enum) and isinstance(old, sa.String):
        return "allows only the enum's values, so rows holding any other text fail to convert"
    return (
        "is an unrelated type, so values may fail to convert and code expecting the old type breaks"
    )


def _string_narrowing(old: sa.String, new: sa.String) -> str | None:
    if isinstance(old, sa.Text) and not isinstance(new, sa.Text):
        return "bounds unlimited text, so long values are truncated or rejected"
    if isinstance(new, sa.Text) or new.length is None:
        return None
    if old.length is None or new.length < old.length:
        return "shortens it, so longer values are truncated or rejected"
    return None


def _numeric_narrowing(old: sa.Numeric[Any], new: sa.Numeric[Any]) -> str | None:
    if new.precision is None:
        return None  # an unconstrained NUMERIC holds any value
    if old.precision is None:
        return "constrains unconstrained numbers, so values are rounded or rejected"
    # Without a scale, NUMERIC(p) has no decimal places.
    old_scale, new_scale = old.scale or 0, new.scale or 0
    if new_scale < old_scale:
        return "keeps fewer decimal places, so values are rounded"
    if new.precision - new_scale < old.precision - old_scale:
        return "keeps fewer integer digits, so larger values overflow"
    return None


def _numeric_to_integer(old: sa.Numeric[Any], new: sa.Integer) -> str | None:
    if old.precision is None or old.scale:
        return "drops the fractional part of values, or overflows on large ones"
    # NUMERIC(p, 0) fits when its largest value (p nines) has fewer digits than the integer's
    # maximum, e.g. NUMERIC(9) in INTEGER.
    if old.precision < _INTEGER_DIGITS[_integer_bytes(new)]:
        return None
    return "cannot hold every old value, so larger ones overflow"


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


def _check_sql(revision: str, sqltext: Any) -> Finding:
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


def _offline_context(buffer: io.StringIO) -> MigrationContext:
    # as_sql spares Alembic a connection. The recorder never hands an operation to the dialect
    # implementation, so whatever lands in the buffer came from a revision reaching around
    # op (op.get_context().bind, say).
    return MigrationContext.configure(
        dialect_name="postgresql", opts={"as_sql": True, "output_buffer": buffer}
    )


#: A revision that moves columns elsewhere before dropping them names them in a module-level
#: dict of this name, ``{"table.column": "where its values went"}``: their drops are reported,
#: not refused, since the revision itself keeps every value.
COPIED_BEFORE_DROP = "COPIED_BEFORE_DROP"


def _copied_first(finding: Finding, copied: dict[str, str]) -> Finding:
    """``finding``, not destructive if it drops a column its revision copied elsewhere first."""
    where = copied.get(f"{finding.table}.{finding.column}")
    if finding.operation != "drop_column" or where is None:
        return finding
    return replace(
        finding,
        detail=f"drop_column removes column {finding.table}.{finding.column}, whose values "
        f"the revision copied to {where} first.",
        destructive=False,
    )


def lint_scripts(scripts: Sequence[Script]) -> list[Finding]:
    """Findings in ``scripts``, which are applied in the given order (oldest first).

    Each revision's ``upgrade()`` runs with its ``op`` pointing at a recorder, so nothing
    touches a database; SQL run through ``op.get_bind()`` is checked like ``op.execute()``.
    Only this thread's ``op`` is redirected (see :mod:`tenantry.db.alembic_threads`). A
    revision that fails without a database (it reads query results, say) gives a destructive
    ``raw_sql`` finding, since the rest of its upgrade went unchecked.
    """
    linter = _Linter(_offline_context(io.StringIO()).dialect)
    findings: list[Finding] = []
    for script in scripts:
        recording = _record(script)
        copied: dict[str, str] = getattr(script.module, COPIED_BEFORE_DROP, {})
        for operation in recording.operations:
            findings.extend(
                _copied_first(f, copied) for f in linter.check(script.revision, operation)
            )
        if recording.emitted:
            findings.append(_check_sql(script.revision, recording.emitted))
        failure = recording.failure
        if failure is not None:
            findings.append(
                Finding(
                    script.revision,
                    "raw_sql",
                    None,
                    None,
                    f"upgrade() of revision {script.revision} failed when run without a database "
                    f"({type(failure).__name__}: {failure}), so whatever it does after that "
                    "point, which may destroy data, was not checked.",
                    True,
                )
            )
    return findings


def lint_pending(spec: SchemaSpec, start: str | None, target: str | None) -> list[Finding]:
    """Findings in the revisions an upgrade from ``start`` to ``target`` would apply.

    The revisions are those :func:`tenantry.db.migrations.between` lists. ``start`` is the
    database's revision (None: empty); ``target`` may be ``head``, an id or a unique prefix.
    Raises :class:`~tenantry.errors.MigrationError` as ``between`` does.
    """
    resolved = migrations.resolve(spec, target) if target is not None else None
    return lint_scripts(migrations.between(spec, start, resolved))
