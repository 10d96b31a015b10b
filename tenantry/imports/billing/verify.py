"""Verification of an import: per table, rows and amount totals per currency, source vs billing.

The source side is what the import read (every row, converted as imported); the billing side
is read back from billing for exactly the ids those rows map to, so rows the app wrote itself
under the same app are not counted, and a row deleted, an amount changed or a currency
changed in billing after the import shows as a difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from tenantry.imports.billing.plan import ID_CHUNK, TableTally
from tenantry.imports.billing.targets import TARGETS


@dataclass(frozen=True)
class TableCheck:
    """One table's comparison."""

    source: str
    into: str
    source_rows: int
    billing_rows: int
    source_totals: dict[str, int]
    billing_totals: dict[str, int]

    @property
    def ok(self) -> bool:
        """Whether billing holds every row, with the same totals per currency."""
        return self.source_rows == self.billing_rows and self.source_totals == self.billing_totals

    def differences(self) -> list[str]:
        """What differs, for people."""
        found: list[str] = []
        if self.source_rows != self.billing_rows:
            found.append(
                f"{self.source} → {self.into}: {self.source_rows} rows in the source, "
                f"{self.billing_rows} in billing"
            )
        for currency in sorted(set(self.source_totals) | set(self.billing_totals)):
            source, billing = (
                self.source_totals.get(currency, 0),
                self.billing_totals.get(currency, 0),
            )
            if source != billing:
                found.append(
                    f"{self.source} → {self.into}: {currency} total {source} in the source, "
                    f"{billing} in billing (minor units)"
                )
        return found

    def document(self) -> dict[str, Any]:
        """As JSON."""
        return {
            "table": self.source,
            "into": self.into,
            "ok": self.ok,
            "source": {"rows": self.source_rows, "totals": self.source_totals},
            "billing": {"rows": self.billing_rows, "totals": self.billing_totals},
        }


@dataclass(frozen=True)
class Verification:
    """Every table's comparison."""

    tables: list[TableCheck]

    @property
    def ok(self) -> bool:
        """Whether every table matches."""
        return all(t.ok for t in self.tables)

    def differences(self) -> list[str]:
        """Every difference, for people."""
        return [line for t in self.tables for line in t.differences()]

    def document(self) -> dict[str, Any]:
        """As JSON: ``{ok, tables: [...], differences: [...]}``."""
        return {
            "ok": self.ok,
            "tables": [t.document() for t in self.tables],
            "differences": self.differences(),
        }


def _billing_side(billing: Engine, tally: TableTally) -> tuple[int, dict[str, int]]:
    target = TARGETS[tally.into]
    table = target.table
    rows, totals = 0, dict[str, int]()
    with billing.connect() as conn:
        for start in range(0, len(tally.ids), ID_CHUNK):
            chunk = tally.ids[start : start + ID_CHUNK]
            if target.amount is None:
                rows += int(conn.scalar(select(func.count()).where(table.c.id.in_(chunk))) or 0)
                continue
            query = (
                select(table.c.currency, func.count(), func.sum(table.c[target.amount]))
                .where(table.c.id.in_(chunk))
                .group_by(table.c.currency)
            )
            for currency, count, total in conn.execute(query):
                rows += int(count)
                totals[currency] = totals.get(currency, 0) + int(total or 0)
    return rows, totals


def verify(billing: Engine, tallies: list[TableTally]) -> Verification:
    """Compare each table the import read with what billing holds for it."""
    checks: list[TableCheck] = []
    for tally in tallies:
        rows, totals = _billing_side(billing, tally)
        checks.append(
            TableCheck(
                tally.source,
                tally.into.value,
                len(tally.ids),
                rows,
                dict(sorted(tally.totals.items())),
                dict(sorted(totals.items())),
            )
        )
    return Verification(checks)
