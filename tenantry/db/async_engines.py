"""Async engines on tenant databases, for application code that runs on asyncio.

SQLAlchemy's asyncio extension over a native async driver: ``aiosqlite`` for SQLite,
psycopg 3's own async mode for PostgreSQL (nothing more to install), ``aiomysql`` for
MySQL/MariaDB (``pip install 'tenantry[async]'``). Never a sync driver in a thread.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tenantry.db import statement_timeout
from tenantry.db.engines import server_connect_args, sqlite_busy_timeout_ms
from tenantry.db.tls import check_transport
from tenantry.db.urls import backend_of
from tenantry.errors import ConfigurationError

#: The async driver of each backend, and the package that provides it.
ASYNC_DRIVERS = {
    "sqlite": ("aiosqlite", "aiosqlite"),
    "postgresql": ("psycopg_async", "psycopg"),
    "mysql": ("aiomysql", "aiomysql"),
}


def async_url(url: URL) -> URL:
    """``url`` with its backend's async driver; :class:`ConfigurationError` naming the
    package to install when that driver is missing."""
    backend = backend_of(url)
    driver, package = ASYNC_DRIVERS[backend]
    if importlib.util.find_spec(package) is None:
        raise ConfigurationError(
            f"async sessions on {backend} need the {package} package, which is not installed.",
            "Install it: pip install 'tenantry[async]'.",
        )
    return url.set(drivername=f"{backend}+{driver}")


def make_async_engine(
    url: URL,
    *,
    pool_size: int = 2,
    statement_timeout_ms: int | None = None,
    transaction_pooler: bool = False,
) -> AsyncEngine:
    """An async engine on ``url`` (a sync URL as tenantry stores it) with the same transport
    rules and timeouts as :func:`tenantry.db.engines.make_engine`: TLS enforced when
    required, a connect timeout on servers, foreign keys and the busy timeout on SQLite, the
    statement timeout on PostgreSQL (through a transaction-mode pooler, as there: no prepared
    statements and no startup options)."""
    check_transport(url)
    backend = backend_of(url)
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        engine = create_async_engine(async_url(url), **kwargs)
        busy_timeout_ms = sqlite_busy_timeout_ms()

        @event.listens_for(engine.sync_engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cursor.close()

        return engine
    kwargs["pool_size"] = pool_size
    kwargs["pool_pre_ping"] = True
    # aiomysql tries no TLS unless asked (and knows no ssl_disabled).
    connect_args = server_connect_args(url)
    connect_args.pop("ssl_disabled", None)
    kwargs["connect_args"] = connect_args
    if transaction_pooler and backend == "postgresql":
        kwargs["connect_args"]["prepare_threshold"] = None
    else:
        statement_timeout.apply(kwargs, url, statement_timeout_ms)
    return create_async_engine(async_url(url), **kwargs)
