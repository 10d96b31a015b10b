"""Destructive-change linter: what pending Alembic revisions would do to data and running code.

No database is needed. Each revision's ``upgrade()`` runs against a recorder standing in for
``alembic.op``: every operation it would perform (plain or inside ``batch_alter_table``) is
collected instead of executed, and then checked against the rules (:mod:`.rules`, with the
type changes of :mod:`.narrowing`). The recorder sees the
revision as it would run on PostgreSQL, so branches for other dialects are not followed.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, cast

from alembic.operations import BatchOperations, Operations, ops
from alembic.runtime.migration import MigrationContext
from alembic.script import Script
from sqlalchemy.engine import Connection
from sqlalchemy.engine.mock import MockConnection

from tenantry.db import alembic_threads, migrations
from tenantry.db.lint.findings import Finding
from tenantry.db.lint.rules import Linter, check_sql
from tenantry.db.schemas import SchemaSpec


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


def _offline_context(buffer: io.StringIO) -> MigrationContext:
    # as_sql spares Alembic a connection. The recorder never hands an operation to the dialect
    # implementation, so whatever lands in the buffer came from a revision reaching around
    # op (op.get_context().bind, say).
    return MigrationContext.configure(
        dialect_name="postgresql", opts={"as_sql": True, "output_buffer": buffer}
    )


#: A revision that moves columns (or tables) elsewhere before dropping them names them in a
#: module-level dict of this name, ``{"table.column" or "table": "where its values went"}``:
#: their drops are reported, not refused, since the revision itself keeps every value.
COPIED_BEFORE_DROP = "COPIED_BEFORE_DROP"


def _copied_first(finding: Finding, copied: dict[str, str]) -> Finding:
    """``finding``, not destructive if it drops a column (``table.column``) or a table
    (``table``) its revision copied elsewhere first."""
    if finding.operation == "drop_column":
        what = f"column {finding.table}.{finding.column}, whose values"
        where = copied.get(f"{finding.table}.{finding.column}")
    elif finding.operation == "drop_table":
        what = f"table {finding.table}, whose rows"
        where = copied.get(f"{finding.table}")
    else:
        return finding
    if where is None:
        return finding
    return replace(
        finding,
        detail=f"{finding.operation} removes {what} the revision copied to {where} first.",
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
    linter = Linter(_offline_context(io.StringIO()).dialect)
    findings: list[Finding] = []
    for script in scripts:
        recording = _record(script)
        copied: dict[str, str] = getattr(script.module, COPIED_BEFORE_DROP, {})
        for operation in recording.operations:
            findings.extend(
                _copied_first(f, copied) for f in linter.check(script.revision, operation)
            )
        if recording.emitted:
            findings.append(check_sql(script.revision, recording.emitted))
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
