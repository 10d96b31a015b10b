"""The weekly size report of seed 004: every database (master, billing, each store's) with its
size and its tables' sizes and rows, largest first.

A database that cannot be read is in the report with its error instead of its numbers: one
unreachable store database never hides the others. Store databases are read through the
migrator URL where the store has one (the runtime login may not see every table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db.engines import connect, make_engine, sqlite_path
from tenantry.db.master.models import DatabaseStatus, IntegrationConfig, Store
from tenantry.db.sizes import TableSize, database_bytes, table_sizes
from tenantry.db.urls import backend_of, mask
from tenantry.errors import DatabaseUnreachable, TenantryError
from tenantry.services.connections import migrator_url


@dataclass(frozen=True)
class Target:
    """A database to measure: its name in the report, its role and where it is."""

    name: str
    role: str
    url: URL


@dataclass(frozen=True)
class DatabaseSizes:
    """One database's size and its tables (largest first), or why it could not be read."""

    name: str
    role: str
    backend: str
    bytes: int | None = None
    tables: list[TableSize] = field(default_factory=list)
    error: str | None = None

    @property
    def rows(self) -> int:
        """Rows in all its tables (estimated on PostgreSQL and MySQL)."""
        return sum(t.rows for t in self.tables)

    def document(self, top: int | None = None) -> dict[str, Any]:
        """As JSON-ready values; ``top`` keeps only the largest tables."""
        return {
            "name": self.name,
            "role": self.role,
            "backend": self.backend,
            "bytes": self.bytes,
            "rows": self.rows if self.error is None else None,
            "table_count": len(self.tables),
            "tables": [
                {"name": t.name, "bytes": t.bytes, "rows": t.rows} for t in self.tables[:top]
            ],
            "error": self.error,
        }


def tenant_targets(session: Session, box: SecretBox) -> list[Target]:
    """Every active store's database, by slug (its name in the report: ``store:<slug>``)."""
    rows = session.execute(
        select(Store.slug, IntegrationConfig)
        .join(IntegrationConfig, IntegrationConfig.store_id == Store.id)
        .where(
            IntegrationConfig.is_active.is_(True),
            Store.database_status == DatabaseStatus.ACTIVE,
            Store.deleted_at.is_(None),
        )
        .order_by(Store.slug)
    )
    return [Target(f"store:{slug}", "tenant", migrator_url(session, box, c)) for slug, c in rows]


def measure(target: Target) -> DatabaseSizes:
    """``target``'s size and tables; a database that cannot be read gives its error."""
    backend = backend_of(target.url)
    try:
        path = sqlite_path(target.url)
        if path is not None and not path.is_file():  # connecting would create it, empty
            raise DatabaseUnreachable(f"the database file {mask(target.url)} is missing.")
        engine = make_engine(target.url, pooled=False)
        try:
            with connect(engine) as conn:
                size = database_bytes(conn)
                tables = table_sizes(conn)
        finally:
            engine.dispose()
    except TenantryError as exc:
        return DatabaseSizes(target.name, target.role, backend, error=str(exc))
    except SQLAlchemyError as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        return DatabaseSizes(
            target.name, target.role, backend, error=f"{type(exc).__name__}: {first}"
        )
    return DatabaseSizes(target.name, target.role, backend, size, tables)


def size_report(
    targets: list[Target], *, on_done: Callable[[DatabaseSizes], object] | None = None
) -> list[DatabaseSizes]:
    """Measure each target in turn; the databases largest first (unreadable ones last)."""
    found = []
    for target in targets:
        sizes = measure(target)
        found.append(sizes)
        if on_done is not None:
            on_done(sizes)
    return sorted(found, key=lambda d: (d.bytes is None, -(d.bytes or 0), d.name))
