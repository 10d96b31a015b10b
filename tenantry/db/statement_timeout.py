"""Statement timeouts for runtime connections (the API's and the tenant router's).

A runtime query that runs away holds a pooled connection and locks until it ends; the
server cancels it after ``TENANTRY_STATEMENT_TIMEOUT_MS`` instead. Migrations, backups,
fleet runs and restores open their engines without one: their statements are long by
nature. PostgreSQL gets ``statement_timeout`` in the connection's startup options (no extra
round trip); MariaDB ``max_statement_time`` (seconds) and MySQL ``max_execution_time``
(milliseconds, SELECT only) are set as each connection opens.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tenantry.db.urls import backend_of

#: SQLSTATE query_canceled (statement_timeout, or a cancel request).
_PG_CANCELED = "57014"
#: MariaDB's ER_STATEMENT_TIMEOUT and MySQL's ER_QUERY_TIMEOUT.
_MYSQL_TIMEOUTS = (1969, 3024)


def pg_options(url: URL, timeout_ms: int) -> str:
    """The libpq ``options`` of ``url`` with the statement timeout added."""
    own = str(url.query.get("options", "")).strip()
    return f"{own} -c statement_timeout={timeout_ms}".strip()


def limit_mysql_statements(engine: Engine, timeout_ms: int) -> None:
    """Set the statement time limit on every connection ``engine`` opens (MySQL family)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        try:
            if "mariadb" in str(dbapi_conn.get_server_info()).lower():
                cursor.execute(f"SET SESSION max_statement_time = {timeout_ms / 1000:.3f}")
            else:
                cursor.execute(f"SET SESSION max_execution_time = {int(timeout_ms)}")
        finally:
            cursor.close()


def apply(engine_kwargs: dict[str, Any], url: URL, timeout_ms: int | None) -> None:
    """Add what PostgreSQL needs for ``timeout_ms`` to ``create_engine``'s arguments."""
    if timeout_ms and backend_of(url) == "postgresql":
        engine_kwargs.setdefault("connect_args", {})["options"] = pg_options(url, timeout_ms)


def is_statement_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is the server cancelling a statement that ran past its time limit."""
    if not isinstance(exc, DBAPIError) or exc.orig is None:
        return False
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == _PG_CANCELED:
        return True
    args: tuple[object, ...] = tuple(getattr(orig, "args", ()))
    return len(args) > 0 and args[0] in _MYSQL_TIMEOUTS
