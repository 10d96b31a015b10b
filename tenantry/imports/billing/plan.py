"""Reading a legacy source table by table: the dry-run's checks, and the import's batches.

:func:`scan` reads every mapped legacy table in import order (parents first), in batches,
converts each row (:mod:`.convert`) and checks what one row cannot show alone: duplicate
external ids, two rows with one billing key (an invoice number), references to rows the
source does not have (an invoice of an unknown customer), and rows billing already holds under
another id (not from an import). Without ``write`` it only counts: rows to import, rows
already imported, totals per currency. With ``write`` each batch's missing rows are inserted
in one billing transaction: a rerun, or a resume after the process died, finds the rows of
the batches already committed (same ids, :func:`~.targets.derived_id`) and skips them, so
every row is written exactly once.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, func, inspect, select
from sqlalchemy.exc import IntegrityError

from tenantry.db.engines import writer
from tenantry.errors import Conflict
from tenantry.failpoints import failpoint
from tenantry.imports.billing.convert import Converted, Converter, Problems, RowProblem
from tenantry.imports.billing.mapping import Mapping, TableMapping
from tenantry.imports.billing.targets import TARGETS, Target, TargetName, derived_id

#: Ids asked of billing per query (well below every backend's parameter limit).
ID_CHUNK = 500


@dataclass
class TableTally:
    """One legacy table as read: its rows, the billing ids they map to, their totals."""

    source: str
    into: TargetName
    rows: int = 0
    #: Rows billing does not hold yet (before this scan wrote them).
    new: int = 0
    #: Rows an earlier run imported already.
    present: int = 0
    #: Rows this scan wrote.
    written: int = 0
    #: Amount totals in minor units per currency, as the source says.
    totals: dict[str, int] = field(default_factory=dict)
    ids: list[uuid.UUID] = field(default_factory=list, repr=False)

    def document(self) -> dict[str, Any]:
        """As JSON (without the ids)."""
        return {
            "table": self.source,
            "into": self.into.value,
            "rows": self.rows,
            "new": self.new,
            "already_imported": self.present,
            "written": self.written,
            "totals": dict(sorted(self.totals.items())),
        }


@dataclass
class Scanned:
    """What a scan found: each table's tally, and every problem."""

    tables: list[TableTally]
    problems: Problems

    @property
    def rows(self) -> int:
        """Rows in every mapped table."""
        return sum(t.rows for t in self.tables)


#: Called after each batch: (legacy table, rows of it done, rows done in all).
OnBatch = Callable[[str, int, int], None]


def count_rows(conn: Connection, mapping: Mapping) -> int:
    """How many rows the mapped legacy tables have in all (absent tables count none)."""
    names = set(inspect(conn).get_table_names())
    total = 0
    for name in mapping.tables:
        if name in names:
            table = _reflect(conn, name)
            total += int(conn.scalar(select(func.count()).select_from(table)) or 0)
    return total


def _reflect(conn: Connection, name: str) -> Table:
    return Table(name, MetaData(), autoload_with=conn)


def _batches(
    conn: Connection, table: Table, order: str, size: int
) -> Iterator[list[dict[str, Any]]]:
    """The table's rows in order of ``order``, ``size`` at a time, streamed from the server."""
    query = select(table).order_by(table.c[order])
    result = conn.execution_options(stream_results=True, yield_per=size).execute(query)
    for part in result.mappings().partitions(size):
        yield [dict(row) for row in part]


def _existing(billing: Connection, target: Target, ids: list[uuid.UUID]) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    table = target.table
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start : start + ID_CHUNK]
        found.update(billing.scalars(select(table.c.id).where(table.c.id.in_(chunk))))
    return found


def _collisions(
    billing: Connection, target: Target, app_id: str, rows: list[Converted]
) -> list[tuple[str, Converted]]:
    """The rows whose unique billing keys (an invoice number, a processor's id) billing holds
    under another id: (billing column, row)."""
    table = target.table
    clashing: list[tuple[str, Converted]] = []
    for key in target.unique:
        # A processor's ids are unique per processor across apps; the others per app.
        by_processor = key.startswith("processor_")
        wanted = {
            (r.values.get("processor") if by_processor else None, r.values[key]): r
            for r in rows
            if r.values.get(key) is not None
        }
        if not wanted:
            continue
        scope = table.c.processor if by_processor else table.c.app_id
        query = select(table.c.id, scope, table.c[key]).where(
            table.c[key].in_({value for _, value in wanted})
        )
        if not by_processor:
            query = query.where(table.c.app_id == app_id)
        for row_id, scoped, value in billing.execute(query):
            mine = wanted.get((scoped if by_processor else None, value))
            if mine is not None and mine.id != row_id:
                clashing.append((key, mine))
    return clashing


class _Scan:
    """One pass over the source (see the module)."""

    def __init__(
        self,
        source: Connection,
        billing: Engine,
        mapping: Mapping,
        app_id: str,
        *,
        write: bool,
        on_batch: OnBatch | None,
    ) -> None:
        self.source = source
        self.billing = billing
        self.mapping = mapping
        self.app_id = app_id
        self.write = write
        self.on_batch = on_batch
        self.problems = Problems()
        self.done = 0
        #: Legacy ids seen per billing table, for references.
        self.known: dict[TargetName, set[str]] = defaultdict(set)

    def run(self) -> Scanned:
        names = set(inspect(self.source).get_table_names())
        tallies: list[TableTally] = []
        for name, table_mapping in self.mapping.in_order():
            tally = TableTally(name, table_mapping.into)
            tallies.append(tally)
            if name not in names:
                self.problems.add(name, None, "no such table in the source database")
                continue
            self._table(name, table_mapping, tally)
        return Scanned(tallies, self.problems)

    def _table(self, name: str, table_mapping: TableMapping, tally: TableTally) -> None:
        table = _reflect(self.source, name)
        converter = Converter(name, table_mapping, set(table.c.keys()), self.app_id)
        for column, problem in converter.mapping_problems:
            self.problems.add(name, column, problem)
        if converter.mapping_problems:
            return  # its rows cannot be read as mapped
        seen_keys: set[str] = set()
        seen_unique: set[tuple[str, Any, Any]] = set()
        target = converter.target
        for number, batch in enumerate(
            _batches(self.source, table, converter.external_id, self.mapping.batch_rows), 1
        ):
            rows = self._convert(converter, batch, seen_keys, seen_unique, tally)
            self._refer(name, target, rows)
            with self.billing.connect() as conn:
                clashes = _collisions(conn, target, self.app_id, rows)
            for column, clash in clashes:
                self.problems.add(
                    name,
                    converter.source_of(column),
                    "billing already holds this key under another id (not from an import of "
                    "this app): remove that row or leave this one out",
                    clash.key,
                )
            self._store(target, rows, tally, number)
            tally.rows += len(batch)
            self.done += len(batch)
            if self.on_batch is not None:
                self.on_batch(name, tally.rows, self.done)

    def _convert(
        self,
        converter: Converter,
        batch: list[dict[str, Any]],
        seen_keys: set[str],
        seen_unique: set[tuple[str, Any, Any]],
        tally: TableTally,
    ) -> list[Converted]:
        name, target = converter.source, converter.target
        rows: list[Converted] = []
        for row in batch:
            key = converter.key(row)
            if key is None:
                self.problems.add(name, converter.external_id, "no external id", "(null)")
                continue
            if key in seen_keys:
                self.problems.add(name, converter.external_id, "duplicate external id", key)
                continue
            seen_keys.add(key)
            self.known[target.name].add(key)
            try:
                converted = converter.convert(row, key)
            except RowProblem as problem:
                self.problems.add(name, problem.column, problem.problem, key)
                continue
            for unique in target.unique:
                value = converted.values.get(unique)
                if value is None:
                    continue
                triple = (unique, converted.values.get("processor"), value)
                if triple in seen_unique:
                    self.problems.add(
                        name,
                        converter.source_of(unique),
                        f"two rows with one {unique} (billing keeps it unique)",
                        key,
                    )
                seen_unique.add(triple)
            amount = target.amount
            if amount is not None:
                currency = converted.values["currency"]
                tally.totals[currency] = tally.totals.get(currency, 0) + converted.values[amount]
            tally.ids.append(converted.id)
            rows.append(converted)
        return rows

    def _refer(self, name: str, target: Target, rows: list[Converted]) -> None:
        """Report references to rows neither the source nor billing has."""
        missing: dict[TargetName, list[tuple[Converted, str]]] = defaultdict(list)
        for row in rows:
            for to, ref in row.refers_to:
                if ref not in self.known[to]:
                    missing[to].append((row, ref))
        for to, pairs in missing.items():
            link = next(n for n, lk in target.links.items() if lk.to == to)
            column = self.mapping.tables[name].links[link]
            with self.billing.connect() as conn:
                there = _existing(
                    conn, TARGETS[to], [derived_id(self.app_id, to, ref) for _, ref in pairs]
                )
            for row, ref in pairs:
                if derived_id(self.app_id, to, ref) not in there:
                    self.problems.add(
                        name,
                        column,
                        f"refers to a {to.value[:-1]} the source does not have",
                        row.key,
                    )

    def _store(self, target: Target, rows: list[Converted], tally: TableTally, number: int) -> None:
        if not self.write:
            with self.billing.connect() as conn:
                present = _existing(conn, target, [r.id for r in rows])
            tally.present += len(present)
            tally.new += len(rows) - len(present)
            return
        if self.problems:
            # A row that changed since the dry-run: stop before writing it.
            first = self.problems.all()[0]
            raise Conflict(
                f"the source changed since it was checked: {first.line()}; the rows before it "
                "are imported.",
                "Fix the source (or the mapping) and run the import again: it goes on from there.",
            )
        with writer(self.billing).begin() as conn:
            there = _existing(conn, target, [r.id for r in rows])
            missing = [r.values for r in rows if r.id not in there]
            if missing:
                try:
                    conn.execute(target.table.insert(), missing)
                except IntegrityError:
                    # The driver's message would quote the row's values: say which rows instead.
                    raise Conflict(
                        f"billing refused a batch of {tally.source} (rows "
                        f"{rows[0].key}…{rows[-1].key}): one of its keys is there already.",
                        "Run the import with --dry-run to find the row.",
                    ) from None
        tally.present += len(there)
        tally.new += len(missing)
        tally.written += len(missing)
        # Tests kill the process here, after a batch committed and before its progress is.
        failpoint(f"import_billing.{target.name.value}.{number}")


def scan(
    source: Connection,
    billing: Engine,
    mapping: Mapping,
    app_id: str,
    *,
    write: bool = False,
    on_batch: OnBatch | None = None,
) -> Scanned:
    """Read the source as mapped (see the module); with ``write``, import it."""
    return _Scan(source, billing, mapping, app_id, write=write, on_batch=on_batch).run()
