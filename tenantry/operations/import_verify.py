"""The verification step of a store's import (:mod:`.import_store`): every table's rows in the
tenant database against the store's rows in the source, then the foreign keys inside the tenant
database.

Per table: the store's row count in the source (read again), the rows the cursor says were
copied and the rows imported agree, and so do the checksums. Tables the servers copied
(:mod:`tenantry.imports.pg_copy`) are checked by the servers: the count and checksum of the
source's rows put through the same SQL again, and of the tenant table. The others compare the
checksum of the source rows as they were copied (kept in the cursor with them) with the
imported rows' read back. The source's side runs on a thread of its own, so both servers work
at once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from tenantry.db.copy import TableDigest
from tenantry.db.engines import connect
from tenantry.imports.cursor import read_cursors
from tenantry.imports.digest import Digest, target_digest
from tenantry.imports.pg_copy import (
    Checksum,
    SqlTable,
    checksum_method,
    source_checksums,
    target_checksums,
)
from tenantry.imports.plan import ImportPlan
from tenantry.imports.source import store_filter
from tenantry.imports.target import dangling_references
from tenantry.operations.import_progress import ImportRun, StoreOutcome
from tenantry.operations.move_copy import VerificationFailed


@dataclass
class StoreVerification:
    """Verifies stores' imported rows against ``source`` (one store per :meth:`run`)."""

    source: Engine
    plan: ImportPlan
    row_batch: int

    def run(
        self, dst: Connection, run: ImportRun, outcome: StoreOutcome, in_sql: dict[str, SqlTable]
    ) -> None:
        """Verify ``run``'s store in the tenant database of ``dst`` (``in_sql``: the tables
        the servers copied); raises :class:`VerificationFailed` naming the tables that
        differ."""
        tables = self.plan.tables
        conditions = {
            name: store_filter(tables, self.plan.mapping, name, run.target.key) for name in tables
        }
        with connect(self.source) as src:
            cursors = read_cursors(dst)
            dst.rollback()
            method = checksum_method(src, dst) if in_sql else None
            with ThreadPoolExecutor(1, thread_name_prefix="import-verify") as pool:
                source_side = pool.submit(self._source_side, src, conditions, in_sql, method)
                imported = self._target_side(dst, in_sql, run, method)
                in_source = source_side.result()
            problems: list[str] = []
            for name, st in tables.items():
                cursor = cursors.get(name)
                copied = cursor.rows_copied if cursor is not None else 0
                after = imported[name]
                entry = outcome.tables.setdefault(name, {})
                if isinstance(after, Checksum):
                    entry.update(verified=after.rows, checksum=after.hex[:16])
                    before = in_source[name]
                    assert isinstance(before, Checksum)
                    if not before.rows == copied == after.rows:
                        problems.append(
                            f"{name}: {before.rows} rows in the source, {copied} copied, "
                            f"{after.rows} imported"
                        )
                    elif before != after:
                        problems.append(f"{name}: same {after.rows} rows, different content")
                    continue
                entry.update(verified=after.rows, checksum=after.sha256[:16])
                digest = Digest(st.target, st.hashed_columns)
                if cursor is not None:
                    digest.resume(cursor.rows_copied, cursor.digest)
                as_copied = digest.result()
                if not in_source[name] == as_copied.rows == after.rows:
                    problems.append(
                        f"{name}: {in_source[name]} rows in the source, {as_copied.rows} copied, "
                        f"{after.rows} imported"
                    )
                elif as_copied.sha256 != after.sha256:
                    problems.append(f"{name}: same {after.rows} rows, different content")
            problems += dangling_references(dst, [st.target for st in tables.values()])
        if problems:
            raise VerificationFailed(
                "the imported rows do not match the source (" + "; ".join(problems[:5]) + ").",
                "The store's database was put back as it was. Something wrote to the source "
                "during the import: check and run it again.",
            )

    def _source_side(
        self,
        src: Connection,
        conditions: dict[str, Any],
        in_sql: dict[str, SqlTable],
        method: str | None,
    ) -> dict[str, Checksum | int]:
        """Per table, the store's rows in the source: their checksum through the copy's SQL
        (tables the servers copied: one query for them all), else their count."""
        found: dict[str, Checksum | int] = {}
        names = [name for name in self.plan.tables if name in in_sql]
        sums = source_checksums(src, [(in_sql[n], conditions[n]) for n in names], method)
        found.update(zip(names, sums, strict=True))
        for name, st in self.plan.tables.items():
            if name not in in_sql:
                query = select(func.count()).select_from(st.table).where(conditions[name])
                found[name] = int(src.scalar(query) or 0)
        src.rollback()
        return found

    def _target_side(
        self, dst: Connection, in_sql: dict[str, SqlTable], run: ImportRun, method: str | None
    ) -> dict[str, Checksum | TableDigest]:
        """Per table, the imported rows' checksum (by the server for the tables it copied:
        one query for them all)."""
        found: dict[str, Checksum | TableDigest] = {}
        names = [name for name in self.plan.tables if name in in_sql]
        found.update(
            zip(names, target_checksums(dst, [in_sql[n] for n in names], method), strict=True)
        )
        dst.rollback()
        run.verified += sum(found[n].rows for n in names)
        run.report()
        for name, st in self.plan.tables.items():
            if name not in in_sql:
                found[name] = target_digest(
                    dst, st.target, st.hashed_columns, batch_rows=self.row_batch
                )
                dst.rollback()
                run.verified += found[name].rows
                run.report()
        return found
