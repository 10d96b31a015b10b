"""The legacy database, opened to be read and never changed.

Servers get a read-only session (:func:`~tenantry.db.readonly.read_only_engine`) in one
REPEATABLE READ transaction, so every read of a pass sees one snapshot. A SQLite file is
opened read-only by SQLite itself (``mode=ro``), not through tenantry's own engines: those
switch a file to WAL as they open it, which would change the legacy file's journal mode.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from tenantry.db.engines import connect, sqlite_path
from tenantry.db.readonly import read_only_engine
from tenantry.db.urls import mask
from tenantry.errors import DatabaseUnreachable


def _sqlite_read_only(path: Path) -> Engine:
    def opened() -> sqlite3.Connection:
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    engine = create_engine("sqlite://", creator=opened, poolclass=NullPool)

    @event.listens_for(engine, "connect")
    def _manual(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # BEGIN is ours (below): one snapshot per pass

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    return engine


@contextmanager
def reading(url: URL) -> Iterator[Connection]:
    """A read-only connection to the legacy database at ``url``, in one transaction."""
    path = sqlite_path(url)
    if path is not None:
        if not path.is_file():
            raise DatabaseUnreachable(
                f"the legacy database {mask(url)} does not exist.", "Check the path in --url."
            )
        engine = _sqlite_read_only(path)
    else:
        engine = read_only_engine(url).execution_options(isolation_level="REPEATABLE READ")
    try:
        with connect(engine, begin=True) as conn:
            yield conn
    finally:
        engine.dispose()
