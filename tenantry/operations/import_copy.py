"""The copy step of a store's import (:mod:`.import_store`): its rows out of the shared source
into its tenant database, table by table in foreign-key order, each from after its cursor.

Three paths: PostgreSQL into PostgreSQL, the tables whose mapping SQL can express are streamed
by COPY between the servers in key-range batches (:mod:`tenantry.imports.pg_copy`); other
tables and engines go row by row in key-ordered batches converted in Python; a table referring
to itself (a tree) goes in one transaction, parents first. Every batch is committed with its
cursor row (:mod:`tenantry.imports.cursor`), so a killed copy resumes after the last committed
key: no row skipped, none twice. The source is read in one snapshot per store's copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from tenantry.db import copy
from tenantry.db.engines import connect
from tenantry.failpoints import failpoint
from tenantry.imports.bulk import insert_rows
from tenantry.imports.cursor import advance, read_cursors
from tenantry.imports.digest import Digest
from tenantry.imports.pg_copy import (
    COPY_BATCH_ROWS,
    SqlTable,
    binary_copy,
    canonical,
    commit_lazily,
    copy_batch,
    flush,
    last_key,
    sql_table,
    tables_column_types,
)
from tenantry.imports.plan import ImportPlan
from tenantry.imports.source import (
    SourceTable,
    decode_key,
    encode_key,
    key_of,
    snapshot,
    store_batches,
    store_filter,
)
from tenantry.imports.target import self_referencing
from tenantry.operations.import_progress import ImportRun, StoreOutcome


@dataclass
class StoreCopy:
    """Copies stores' rows from ``source`` as ``plan`` says (one store per :meth:`run`)."""

    source: Engine
    plan: ImportPlan
    #: Rows per batch (one tenant transaction); None: the path's own default (2,000 row by
    #: row, 50,000 streamed with COPY).
    batch_rows: int | None = None
    #: The source's column types by table (read once: the source is only read).
    _source_types: dict[str, dict[str, str]] = field(init=False, default_factory=dict)

    @property
    def row_batch(self) -> int:
        """Rows per batch copied row by row."""
        return self.batch_rows or copy.BATCH_ROWS

    @property
    def copy_batch(self) -> int:
        """Rows per batch streamed with COPY."""
        return self.batch_rows or COPY_BATCH_ROWS

    def sql_tables(self, src: Connection, dst: Connection) -> dict[str, SqlTable]:
        """The mapped tables the servers copy and verify (PostgreSQL on both sides, every
        column expressible in SQL); none on other engines."""
        if not all(
            c.dialect.name == "postgresql" and c.dialect.driver == "psycopg" for c in (src, dst)
        ):
            return {}
        found: dict[str, SqlTable] = {}
        sts = list(self.plan.tables.values())
        unread = [st.table.name for st in sts if st.table.name not in self._source_types]
        if unread:
            self._source_types.update(tables_column_types(src, unread))
        target_types = tables_column_types(dst, [st.target.name for st in sts])
        for name, st in self.plan.tables.items():
            source_types = self._source_types[st.table.name]
            table = sql_table(st, source_types, target_types[st.target.name])
            if table is not None:
                found[name] = table
        return found

    def run(self, dst: Connection, run: ImportRun, outcome: StoreOutcome) -> dict[str, SqlTable]:
        """Copy ``run``'s store into the tenant database of ``dst`` (from after its cursors);
        the tables the servers copied."""
        run.report("copy", force=True)
        tables = self.plan.tables
        with connect(self.source) as src:
            cursors = read_cursors(dst)
            dst.rollback()
            run.rows = sum(r.rows_copied for r in cursors.values())
            run.bytes = sum(r.bytes_copied for r in cursors.values())
            reader = snapshot(src)
            with reader.begin():
                in_sql = self.sql_tables(reader, dst)
                dst.rollback()
                if in_sql:
                    canonical(reader)
                for name, st in tables.items():
                    cursor = cursors.get(name)
                    entry = outcome.tables.setdefault(name, {"rows": run.target.rows.get(name, 0)})
                    if cursor is not None and cursor.done:
                        entry["copied"] = cursor.rows_copied
                        continue
                    condition = store_filter(tables, self.plan.mapping, name, run.target.key)
                    after = decode_key(st, cursor.last_key) if cursor and cursor.last_key else None
                    digest = Digest(st.target, st.hashed_columns)
                    if cursor is not None:
                        digest.resume(cursor.rows_copied, cursor.digest)
                    if name in in_sql:
                        # Fewer rows than a batch holds (the plan counted them): one batch, in
                        # no particular order (no sort, no key to read back), marked done.
                        whole = after is None and run.target.rows.get(name, 0) < self.copy_batch
                        copied = self._by_copy(
                            reader, dst, in_sql[name], condition, after, run, whole=whole
                        )
                    elif self_referencing(st):
                        copied = self._tree(reader, dst, st, condition, digest, run)
                    else:
                        copied = self._keyed(reader, dst, st, condition, after, digest, run)
                    entry["copied"] = copied + (cursor.rows_copied if cursor else 0)
                    if name in in_sql:
                        continue  # marked done with its last batch
                    with dst.begin():
                        advance(dst, name, None, 0, 0, done=True)
                        copy.reset_sequences(dst, st.target)
            if in_sql:
                flush(dst)  # every batch durable before the verification reads them
        return in_sql

    def _by_copy(
        self,
        src: Connection,
        dst: Connection,
        table: SqlTable,
        condition: Any,
        after: list[Any] | None,
        run: ImportRun,
        *,
        whole: bool = False,
    ) -> int:
        """The store's rows of ``table`` streamed by COPY, a key range per batch, each batch
        committed with the cursor past its last key; the last batch also marks the table
        done (and moves its sequence on), so a resumed copy never reads it again. ``whole``:
        every row in one batch, unordered (a store's table smaller than a batch)."""
        limit = None if whole else self.copy_batch
        binary = binary_copy(src, dst, table)
        name = table.st.name
        copied, number = 0, 0
        while True:
            number += 1
            with dst.begin():  # the rows and the cursor past them: both or neither
                canonical(dst)
                query = table.rows(condition, after=after, limit=limit)
                rows, size = copy_batch(src, dst, table, query, binary=binary)
                commit_lazily(dst)  # flushed once the store's copy ends (run)
                if limit is not None and rows == limit:
                    after = last_key(src, table, condition, after, limit - 1)
                    advance(dst, name, encode_key(after), rows, size)
                else:
                    advance(dst, name, None, rows, size, done=True)
                    copy.reset_sequences(dst, table.st.target)
            failpoint(f"import.batch.{run.target.slug}.{name}.{number}")
            copied += rows
            run.copied(rows, size)
            if limit is None or rows < limit:
                return copied

    def _keyed(
        self,
        src: Connection,
        dst: Connection,
        st: SourceTable,
        condition: Any,
        after: list[Any] | None,
        digest: Digest,
        run: ImportRun,
    ) -> int:
        """The store's rows of ``st`` in key order, converted in Python, a batch per tenant
        transaction with its cursor row (and the running checksum of the rows so far)."""
        copied = 0
        for number, batch in enumerate(
            store_batches(src, st, condition, after=after, batch_rows=self.row_batch), 1
        ):
            rows = [st.convert(r) for r in batch]
            size = digest.add(rows)
            last = encode_key(key_of(st, batch[-1]))
            with dst.begin():  # the rows and the cursor past them: both or neither
                insert_rows(dst, st.target, rows)
                advance(dst, st.name, last, len(rows), size, digest=digest.hex_total)
            failpoint(f"import.batch.{run.target.slug}.{st.name}.{number}")
            copied += len(rows)
            run.copied(len(rows), size)
        return copied

    def _tree(
        self,
        src: Connection,
        dst: Connection,
        st: SourceTable,
        condition: Any,
        digest: Digest,
        run: ImportRun,
    ) -> int:
        """A table referencing itself (a category tree) in one transaction, parents first:
        such tables are small, and rows in key order may come before their parents."""
        rows = [
            st.convert(r)
            for batch in store_batches(src, st, condition, after=None, batch_rows=self.row_batch)
            for r in batch
        ]
        refs = copy._self_references(st.target)
        ordered = copy._parents_first(rows, refs)
        digest.resume(0, None)  # all in one transaction: never resumed part-way
        size = digest.add(ordered)
        with dst.begin():
            for start in range(0, len(ordered), self.row_batch):
                insert_rows(dst, st.target, ordered[start : start + self.row_batch])
            advance(dst, st.name, None, len(ordered), size, done=True, digest=digest.hex_total)
        run.copied(len(ordered), size)
        return len(ordered)
