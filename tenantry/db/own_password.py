"""A login changing its own password on its server (PostgreSQL, MySQL, MariaDB).

The statement changes the password of the login the URL connects as, whatever its name:
PostgreSQL ``ALTER ROLE CURRENT_USER PASSWORD``, MySQL ``ALTER USER CURRENT_USER()
IDENTIFIED BY`` and MariaDB ``SET PASSWORD = PASSWORD(…)`` (MariaDB's ALTER USER needs the
CREATE USER privilege even for oneself; SET PASSWORD does not). Sessions already open keep
working: both servers check a password only when a session starts.
"""

from __future__ import annotations

import secrets

from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tenantry.db.engines import connect, make_engine
from tenantry.db.urls import backend_of, mask, redact
from tenantry.errors import DatabaseAdminError, InvalidInput


def new_password() -> str:
    """A fresh random password (32 URL-safe characters, about 190 bits)."""
    return secrets.token_urlsafe(24)


def change_own_password(url: URL, password: str) -> None:
    """Have the login of ``url`` set its own password to ``password`` on its server.

    Raises :class:`DatabaseAdminError` (nothing changed) when the server refuses, naming the
    URL with its password masked; the new password never appears in an error.
    """
    if not password or not password.isprintable() or len(password) > 256:
        raise InvalidInput("a new password must be 1 to 256 printable characters.")
    backend = backend_of(url)
    if backend == "sqlite":
        raise InvalidInput("a SQLite database has no logins or passwords.")
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            # Utility statements take no bind parameters: the password is a quoted literal.
            if backend == "postgresql":
                quoted = "E'" + password.replace("\\", "\\\\").replace("'", "''") + "'"
            else:  # PyMySQL quotes for the session's sql_mode (NO_BACKSLASH_ESCAPES or not)
                quoted = str(conn.connection.dbapi_connection.escape(password))  # type: ignore[union-attr]
            if backend == "postgresql":
                # password_encryption decides the hash (scram-sha-256 by default).
                conn.exec_driver_sql(f"ALTER ROLE CURRENT_USER PASSWORD {quoted}")
            else:
                # PyMySQL formats every statement with %-style parameters: a literal % doubles.
                quoted = quoted.replace("%", "%%")
                version = str(conn.execute(text("SELECT VERSION()")).scalar_one())
                if "mariadb" in version.lower():
                    conn.exec_driver_sql(f"SET PASSWORD = PASSWORD({quoted})")
                else:
                    conn.exec_driver_sql(f"ALTER USER CURRENT_USER() IDENTIFIED BY {quoted}")
    except DBAPIError as exc:  # connected (connect() reports failing to), then refused
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DatabaseAdminError(
            f"the server at {mask(url)} refused to change its login's password: {redact(detail)}.",
            "Nothing was changed. Give the login the right to change its own password, or "
            "change it on the server and register the new URL.",
        ) from None
    finally:
        engine.dispose()
