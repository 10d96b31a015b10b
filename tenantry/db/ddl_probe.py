"""Whether a login may change a database's schema, found by trying (a connect-existing
store's ``can_ddl``)."""

from __future__ import annotations

import secrets

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from tenantry.db.engines import describe_connect_error, make_engine
from tenantry.db.urls import backend_of, mask, redact
from tenantry.errors import DatabaseAdminError


def probe_ddl(url: URL) -> bool:
    """Whether ``url``'s user may create tables in its database, found by trying: a table
    with a unique name is created and dropped (on PostgreSQL inside a transaction rolled
    back, so nothing is ever left). SQLite files: always."""
    if backend_of(url) == "sqlite":
        return True
    name = f"tenantry_ddl_probe_{secrets.token_hex(6)}"
    engine = make_engine(url, pooled=False)
    try:
        try:
            conn = engine.connect()
        except (OperationalError, InterfaceError) as exc:
            raise describe_connect_error(url, exc) from None
        with conn:
            try:
                if backend_of(url) == "postgresql":
                    with conn.begin() as transaction:
                        conn.exec_driver_sql(f"CREATE TABLE {name} (id INTEGER)")
                        transaction.rollback()
                else:
                    conn.exec_driver_sql(f"CREATE TABLE {name} (id INTEGER)")
                    conn.exec_driver_sql(f"DROP TABLE {name}")
            except DBAPIError as exc:
                if _denied(exc):
                    return False
                detail = redact(str(exc.orig).strip().splitlines()[0]) if exc.orig else ""
                raise DatabaseAdminError(
                    f"{mask(url)} could not be probed for schema changes: {detail}.",
                    "Check the database and the login's privileges.",
                ) from None
            return True
    finally:
        engine.dispose()


def _denied(exc: DBAPIError) -> bool:
    orig = exc.orig
    if orig is None:
        return False
    if getattr(orig, "sqlstate", None) == "42501":  # PostgreSQL insufficient_privilege
        return True
    return bool(orig.args) and orig.args[0] in {1142, 1044}  # MySQL: command/db denied
