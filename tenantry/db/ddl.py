"""CREATE statements of a schema for any supported dialect (the seeds' SchemaExtractor)."""

from __future__ import annotations

from sqlalchemy import Dialect, MetaData
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.schema import CreateIndex, CreateTable

from tenantry.errors import ConfigurationError

DIALECTS: dict[str, type[Dialect]] = {
    "sqlite": sqlite.pysqlite.dialect,
    "postgresql": postgresql.psycopg.dialect,
    "mysql": mysql.pymysql.dialect,
}


def dialect_named(name: str) -> Dialect:
    """A SQLAlchemy dialect object for ``sqlite``, ``postgresql`` or ``mysql``."""
    try:
        return DIALECTS[name]()
    except KeyError:
        raise ConfigurationError(
            f"unknown dialect {name!r}.", f"Choose one of: {', '.join(DIALECTS)}."
        ) from None


def create_statements(metadata: MetaData, dialect_name: str) -> list[str]:
    """Every CREATE TABLE and CREATE INDEX of ``metadata``, in dependency order."""
    dialect = dialect_named(dialect_name)
    statements: list[str] = []
    for table in metadata.sorted_tables:
        statements.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        for index in sorted(table.indexes, key=lambda i: i.name or ""):
            statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    return statements
