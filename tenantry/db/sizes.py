"""How much space a database and its tables take, measured by the server itself.

One function per question, each answering for SQLite, PostgreSQL and MySQL/MariaDB: the
usage rollup keeps ``stores.storage_used_bytes`` current with :func:`database_bytes`, the
metrics export master's and billing's, and the weekly size report lists :func:`table_sizes`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from tenantry.db.shared_schemas import schema_of
from tenantry.db.urls import backend_of


@dataclass(frozen=True)
class TableSize:
    """One table: its bytes (data and indexes) and rows (estimated on PostgreSQL/MySQL)."""

    name: str
    bytes: int
    rows: int


def database_bytes(conn: Connection) -> int:
    """The bytes the connected database takes (data, indexes, free pages it holds); for a
    connection confined to one schema of a shared database, that schema's tables."""
    backend = backend_of(conn.engine.url)
    if backend == "sqlite":
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        size = conn.exec_driver_sql("PRAGMA page_size").scalar_one()
        return int(pages) * int(size)
    if backend == "postgresql" and schema_of(conn.engine.url) is not None:
        # A store in one schema of a shared database: its schema's relations, not the
        # database its neighbours share.
        return int(
            conn.execute(
                text(
                    "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname = current_schema()"
                )
            ).scalar_one()
        )
    if backend == "postgresql":
        return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
    _fresh_mysql_statistics(conn)
    found = conn.execute(
        text(
            "SELECT COALESCE(SUM(data_length + index_length), 0) FROM information_schema.tables "
            "WHERE table_schema = DATABASE()"
        )
    ).scalar_one()
    return int(found)


def table_sizes(conn: Connection) -> list[TableSize]:
    """Every table of the connected database (its own schema), largest first."""
    backend = backend_of(conn.engine.url)
    if backend == "sqlite":
        found = _sqlite_tables(conn)
    elif backend == "postgresql":
        rows = conn.execute(
            text(
                "SELECT c.relname, pg_total_relation_size(c.oid), "
                "GREATEST(c.reltuples, 0)::bigint FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema()"
            )
        )
        found = [TableSize(name, int(size), int(n)) for name, size, n in rows]
    else:
        _fresh_mysql_statistics(conn)
        rows = conn.execute(
            text(
                "SELECT table_name, COALESCE(data_length + index_length, 0), "
                "COALESCE(table_rows, 0) FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'"
            )
        )
        found = [TableSize(name, int(size), int(n)) for name, size, n in rows]
    return sorted(found, key=lambda t: (-t.bytes, t.name))


def _fresh_mysql_statistics(conn: Connection) -> None:
    # MySQL 8 serves information_schema sizes from a cache up to a day old by default; this
    # session reads them live. MariaDB has no such cache (nor the variable).
    dialect = conn.dialect
    version = dialect.server_version_info or ()
    if not getattr(dialect, "is_mariadb", False) and version >= (8,):
        conn.execute(text("SET SESSION information_schema_stats_expiry = 0"))


def _sqlite_tables(conn: Connection) -> list[TableSize]:
    names = [
        str(name)
        for (name,) in conn.exec_driver_sql(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    ]
    pages: dict[str, int] = {}
    try:
        # dbstat counts each table's and index's pages; an index counts for its table.
        for name, size in conn.exec_driver_sql(
            "SELECT m.tbl_name, SUM(d.pgsize) FROM dbstat d "
            "JOIN sqlite_master m ON m.name = d.name GROUP BY m.tbl_name"
        ):
            pages[str(name)] = int(size or 0)
    except OperationalError:  # a SQLite built without the dbstat table: rows only
        pass
    quote = conn.dialect.identifier_preparer.quote
    return [
        TableSize(
            name,
            pages.get(name, 0),
            int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {quote(name)}").scalar_one()),
        )
        for name in names
    ]
