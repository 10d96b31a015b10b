"""The usage counters master keeps on a store (products, orders), recomputed from the store's
database whenever its contents are replaced wholesale (a restore, a move, recovered rows) and
by each usage rollup (which so also catches up a write whose master commit failed).

The counters are kept current one write at a time by the catalog service; a database whose
rows all changed at once (an older backup put back) must be counted again, or master goes on
reporting, and enforcing plan limits on, numbers that are no longer true.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, func, inspect, select, table
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.db.engines import connect, make_engine
from tenantry.db.master.models import Store

#: Store column -> the table of the store's database it counts. A tenant schema plug-in
#: without such a table leaves that counter alone.
COUNTED_TABLES = {"product_count": "products", "order_count": "orders"}


@dataclass(frozen=True)
class StoreCounters:
    """The counters of one store as its database holds them (``None``: no such table)."""

    product_count: int | None
    order_count: int | None

    @classmethod
    def from_row_counts(cls, counts: dict[str, int]) -> StoreCounters:
        """The counters from rows per table (a restore's check or a move's verification)."""
        return cls(*(counts.get(name) for name in COUNTED_TABLES.values()))

    def values(self) -> dict[str, int]:
        """The counters that were found, by store column."""
        found = {"product_count": self.product_count, "order_count": self.order_count}
        return {column: n for column, n in found.items() if n is not None}


def count_store_database(url: URL) -> StoreCounters:
    """Count the rows the counters stand for in the store database at ``url``."""
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            return count_on(conn)
    finally:
        engine.dispose()


def count_on(conn: Connection) -> StoreCounters:
    """Count the rows the counters stand for in the store database ``conn`` is on."""
    present = set(inspect(conn).get_table_names())
    counts = {
        name: int(conn.scalar(select(func.count()).select_from(table(name))) or 0)
        for name in COUNTED_TABLES.values()
        if name in present
    }
    return StoreCounters.from_row_counts(counts)


def apply_counters(session: Session, store_id: uuid.UUID, counters: StoreCounters) -> None:
    """Set the store's counters in master (the caller commits); a deleted store is skipped."""
    store = session.get(Store, store_id)
    if store is None:
        return
    for column, n in counters.values().items():
        setattr(store, column, n)
