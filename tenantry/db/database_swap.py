"""Replacing a database with another in one step, per backend: PostgreSQL two renames in one
transaction, MySQL one ``RENAME TABLE`` moving every table, SQLite the online backup API.

Admin DDL on the tenant's (or master's, billing's) server: it owns its transactions there, as
the rest of :mod:`tenantry.db.admin` does.
"""

from __future__ import annotations

import time
import uuid

from sqlalchemy import inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tenantry.backup.dump_tools.sqlite import replace_sqlite
from tenantry.db.admin import create_database, drop_database
from tenantry.db.engines import connect, make_engine, sqlite_path
from tenantry.db.urls import backend_of


def swap_in(staging: URL, target: URL) -> None:
    """Replace database ``target`` with ``staging`` in one step (``staging`` is gone after)."""
    backend = backend_of(target)
    if backend == "sqlite":
        replace_sqlite(sqlite_path(staging), sqlite_path(target))  # type: ignore[arg-type]
    elif backend == "postgresql":
        _switch_postgres(staging, target)
    else:
        _switch_mysql(staging, target)


def _switch_postgres(staging: URL, target: URL) -> None:
    name, new = str(target.database), str(staging.database)
    old = name[:50] + "_old_" + uuid.uuid4().hex[:6]
    engine = make_engine(target.set(database="postgres"), pooled=False)
    try:
        with connect(engine) as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}
            ).first()
            conn.rollback()
            q = conn.dialect.identifier_preparer.quote
            for attempt in range(20):
                try:
                    with conn.begin():
                        if exists:
                            # Sessions on the target would block the rename; they reconnect
                            # to the restored database.
                            conn.execute(
                                text(
                                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE datname IN (:a, :b) AND pid <> pg_backend_pid()"
                                ),
                                {"a": name, "b": new},
                            )
                            conn.execute(text(f"ALTER DATABASE {q(name)} RENAME TO {q(old)}"))
                        conn.execute(text(f"ALTER DATABASE {q(new)} RENAME TO {q(name)}"))
                    break
                except DBAPIError:
                    if attempt == 19:
                        raise
                    time.sleep(0.1)  # a client reconnected between terminate and rename
    finally:
        engine.dispose()
    if exists:
        drop_database(target.set(database=old))


def _switch_mysql(staging: URL, target: URL) -> None:
    name, new = str(target.database), str(staging.database)
    old_url = target.set(database=name[:50] + "_old_" + uuid.uuid4().hex[:6])
    create_database(old_url)
    engine = make_engine(target, pooled=False)
    try:
        with connect(engine) as conn:
            current = inspect(conn).get_table_names()
            restored = inspect(conn).get_table_names(schema=new)
            q = conn.dialect.identifier_preparer.quote
            moves = [f"{q(name)}.{q(t)} TO {q(str(old_url.database))}.{q(t)}" for t in current]
            moves += [f"{q(new)}.{q(t)} TO {q(name)}.{q(t)}" for t in restored]
            # One RENAME TABLE is atomic: other sessions see all old tables or all new ones.
            conn.exec_driver_sql("SET SESSION foreign_key_checks = 0")
            conn.exec_driver_sql("RENAME TABLE " + ", ".join(moves))
    finally:
        engine.dispose()
    drop_database(old_url)
