"""Dump and restore one database with its own tools: one module per backend.

``base`` holds what they share (running a client tool with its stderr scrubbed of
credentials, :class:`~tenantry.backup.dump_tools.base.BackupEngine`); ``postgres``,
``mysql`` and ``sqlite`` implement it. A new backend is a module here with a
``BackupEngine`` subclass, registered in :data:`ENGINES`.
"""

from __future__ import annotations

from sqlalchemy.engine import URL

from tenantry.backup.dump_tools.base import BackupEngine
from tenantry.backup.dump_tools.mysql import MySQLEngine
from tenantry.backup.dump_tools.postgres import PostgresEngine
from tenantry.backup.dump_tools.sqlite import SQLiteEngine, sqlite_file
from tenantry.db.urls import backend_of

ENGINES: dict[str, BackupEngine] = {
    "postgresql": PostgresEngine(),
    "mysql": MySQLEngine(),
    "sqlite": SQLiteEngine(),
}


def engine_for(url: URL) -> BackupEngine:
    """The backup engine of ``url``'s backend."""
    return ENGINES[backend_of(url)]


def database_label(url: URL) -> str:
    """A database's name for catalogs and manifests: never a URL, never a credential."""
    if backend_of(url) == "sqlite":
        return sqlite_file(url).name
    return str(url.database)
