"""Engines for the three roles, with per-backend settings and readable connection errors."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from tenantry.db import sqlite_writers, statement_timeout
from tenantry.db.tls import check_transport, tls_hint, unreadable_tls_file, uses_tls
from tenantry.db.urls import backend_of, mask, redact, require_driver
from tenantry.errors import ConfigurationError, DatabaseUnreachable

CONNECT_TIMEOUT_S = 5
BUSY_TIMEOUT_ENV = "TENANTRY_SQLITE_BUSY_TIMEOUT_MS"
DEFAULT_BUSY_TIMEOUT_MS = 10_000


def sqlite_busy_timeout_ms() -> int:
    """How long a SQLite connection waits for another writer's lock before "database is
    locked" (``TENANTRY_SQLITE_BUSY_TIMEOUT_MS``, default 10 s)."""
    raw = os.environ.get(BUSY_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_BUSY_TIMEOUT_MS
    if not raw.isdigit() or not 0 < int(raw) <= 3_600_000:
        raise ConfigurationError(
            f"{BUSY_TIMEOUT_ENV} must be a whole number of milliseconds from 1 to 3600000, "
            f"got {raw!r}; unset it for the default ({DEFAULT_BUSY_TIMEOUT_MS})."
        )
    return int(raw)


#: Connections a pooled SQLite engine keeps open for reuse: as many as the API's thread pool
#: (anyio's 40) can use at once. A SQLite connection is a file handle (two descriptors with
#: its WAL), not a server's slot, while opening one costs its PRAGMAs, reading the schema and
#: preparing every statement again; with SQLAlchemy's default (keep 5, close the rest on
#: return) a busy API paid that on most requests. It keeps only what was open at once, and
#: opens more without waiting: SQLite's own locks order the connections, not the pool.
SQLITE_POOL_SIZE = 40


def _is_sqlite_file(url: URL) -> bool:
    """Whether ``url`` (SQLite) is a file, which SQLAlchemy pools with a QueuePool (an
    in-memory database gets one connection per thread instead)."""
    database = url.database or ""
    return database not in ("", ":memory:") and url.query.get("mode") != "memory"


def sqlite_path(url: URL) -> Path | None:
    """The file of a SQLite URL, or ``None`` for other backends."""
    return Path(url.database or "") if backend_of(url) == "sqlite" else None


def _transactional_sqlite(engine: Engine) -> None:
    # pysqlite begins transactions only before DML, so a failed migration would leave its
    # CREATE TABLEs behind. Taking over BEGIN makes DDL transactional, as on PostgreSQL.
    busy_timeout_ms = sqlite_busy_timeout_ms()

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None
        # The file this connection opened ("" in memory): its writers queue on its lock file
        # (sqlite_writers). Per connection, as one engine may open many files (the fleet's).
        main = dbapi_conn.execute("PRAGMA database_list").fetchone()
        record.info[_DB_FILE] = main[2] if main and main[2] else None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        # WAL lets the API read while a worker writes, and NORMAL sync keeps commits cheap
        # while staying durable across application crashes (only power loss can lose the
        # last commits).
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_IMMEDIATE, False)
        if immediate and (path := conn.info.get(_DB_FILE)):
            # This connection's busy timeout as it is now: a migration sets its own lock
            # wait on the connection (locks.migration_lock), and the queue honours it.
            wait_ms = sqlite_pragma(conn, "busy_timeout")
            try:
                conn.info[_WRITER_LOCK] = sqlite_writers.acquire(Path(path), wait_ms)
            except sqlite3.OperationalError as exc:
                # Raised here, in an event, SQLAlchemy would pass the driver's error on
                # unwrapped; wrapped, the queue's timeout reaches callers as SQLite's own
                # busy timeout does (a 503 to retry in the API, a retried claim), not as
                # an unexpected error.
                raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
        except BaseException:
            _end_writer(conn.info, None)
            raise

    # The lock is given back once the transaction has ended in SQLite, so these end it
    # themselves (the driver's own commit or rollback then has nothing left to do).
    @event.listens_for(engine, "commit")
    def _commit(conn: Connection) -> None:
        _end_writer(conn.info, lambda: _end_dbapi(conn.connection.dbapi_connection, "COMMIT"))

    @event.listens_for(engine, "rollback")
    def _rollback(conn: Connection) -> None:
        _end_writer(conn.info, lambda: _end_dbapi(conn.connection.dbapi_connection, "ROLLBACK"))

    # A connection returned or dropped with its transaction open still gives the lock back.
    @event.listens_for(engine.pool, "reset")
    def _reset(dbapi_conn: Any, record: Any, reset_state: Any) -> None:
        _end_writer(record.info, lambda: _end_dbapi(dbapi_conn, "ROLLBACK"))

    @event.listens_for(engine.pool, "invalidate")
    def _invalidate(dbapi_conn: Any, record: Any, exception: BaseException | None) -> None:
        _end_writer(record.info, None)


def _end_dbapi(dbapi_conn: Any, statement: str) -> None:
    if dbapi_conn is not None and dbapi_conn.in_transaction:
        dbapi_conn.execute(statement)


def _end_writer(info: dict[Any, Any], end: Callable[[], object] | None) -> None:
    """End the transaction with ``end`` (if any), then release the writer lock it holds."""
    held = info.pop(_WRITER_LOCK, None)
    if held is None:
        return
    try:
        if end is not None:
            end()
    finally:
        sqlite_writers.release(held)


_IMMEDIATE = "tenantry_sqlite_immediate"
_WRITER_LOCK = "tenantry_sqlite_writer_lock"
_DB_FILE = "tenantry_sqlite_file"


def writer(engine: Engine) -> Engine:
    """``engine`` for transactions that read and then write under contention.

    On SQLite their transactions take the write lock up front (``BEGIN IMMEDIATE``): a
    deferred transaction that read first fails at once with "database is locked" when another
    writer got in between (the busy timeout does not cover that upgrade); this one waits its
    turn instead. Other backends are unaffected.
    """
    return engine.execution_options(**{_IMMEDIATE: True})


def writer_sessions(sessions: sessionmaker[Session]) -> sessionmaker[Session]:
    """``sessions`` whose transactions take SQLite's write lock up front (see :func:`writer`)."""
    options = {k: v for k, v in sessions.kw.items() if k != "bind"}
    return sessionmaker(writer(sessions.kw["bind"]), **options)


@contextmanager
def immediate_transaction(conn: Connection) -> Iterator[Connection]:
    """One transaction on ``conn`` with :func:`writer`'s behaviour (on SQLite it takes the
    write lock as it begins), committed when the block ends and rolled back when it raises.
    The transactions ``conn`` begins afterwards are as they were: a connection's options
    change in place, and a later read taking the write lock would queue behind writers."""
    before = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.execution_options(**{_IMMEDIATE: True})
    try:
        with conn.begin():
            yield conn
    finally:
        if not conn.closed:
            conn.execution_options(**{_IMMEDIATE: before})


def sqlite_pragma(conn: Connection, pragma: str) -> Any:
    """Run ``PRAGMA <pragma>`` on the SQLite connection under ``conn``; its first value
    (``None`` when it returns no row). Straight on the driver's connection, whose
    transactions tenantry begins itself: through SQLAlchemy a setting that is not
    transactional would still be wrapped in a ``BEGIN`` and a ``ROLLBACK``."""
    dbapi_conn = conn.connection.dbapi_connection
    if dbapi_conn is None:
        raise RuntimeError("the connection was closed or invalidated")
    row = dbapi_conn.cursor().execute(f"PRAGMA {pragma}").fetchone()
    return row[0] if row else None


@contextmanager
def single_statements(conn: Connection) -> Iterator[Connection]:
    """``conn`` with no ``BEGIN``/``COMMIT`` around its statements for the block, where
    that saves round trips (PostgreSQL, whose autocommit is client-side); elsewhere, and
    inside a transaction, ``conn`` as it is. The isolation level is put back on exit."""
    switch = conn.dialect.name == "postgresql" and not conn.in_transaction()
    if switch:
        conn.execution_options(isolation_level="AUTOCOMMIT")
    try:
        yield conn
    finally:
        if switch and not conn.closed and not conn.invalidated:
            if conn.in_transaction():
                conn.rollback()  # SQLAlchemy's own bookkeeping: nothing is open on the server
            conn.execution_options(isolation_level=conn.default_isolation_level)


def make_engine(
    url: URL,
    *,
    pool_size: int = 5,
    pooled: bool = True,
    echo: bool = False,
    creator: Callable[[], Any] | None = None,
    statement_timeout_ms: int | None = None,
    role: str | None = None,
    transaction_pooler: bool = False,
) -> Engine:
    """An engine for ``url`` with tenantry's defaults for its backend.

    SQLite files get transactional DDL and foreign keys; servers get a connect timeout, so an
    unreachable host fails in seconds instead of hanging. ``pooled=False`` closes every
    connection on release (one-off work over many databases). ``statement_timeout_ms``
    (runtime engines only) has the server cancel any statement that runs longer. A server
    URL without TLS is refused here when ``TENANTRY_REQUIRE_TLS`` is on. With ``role``
    (master, billing, tenant: the engines the platform serves from), every statement's
    time is observed in ``tenantry_db_query_duration_seconds`` under that role.
    ``transaction_pooler``: ``url`` leads through PgBouncer in transaction mode, so no
    session state is relied on (no server-side prepared statements, no startup options:
    the statement timeout is then the runtime login's own setting).
    """
    engine = _make_engine(
        url, pool_size, pooled, echo, creator, statement_timeout_ms, transaction_pooler
    )
    if role is not None:
        from tenantry.observability import metrics  # only platform engines pay for it

        metrics.time_queries(engine, role)
    return engine


def _make_engine(
    url: URL,
    pool_size: int,
    pooled: bool,
    echo: bool,
    creator: Callable[[], Any] | None,
    statement_timeout_ms: int | None,
    transaction_pooler: bool = False,
) -> Engine:
    require_driver(url)
    check_transport(url)
    backend = backend_of(url)
    kwargs: dict[str, Any] = {"echo": echo, "pool_pre_ping": pooled and backend != "sqlite"}
    if not pooled:
        kwargs["poolclass"] = NullPool
    if creator is not None:  # the caller opens DBAPI connections itself
        kwargs["creator"] = creator
    if backend == "sqlite":
        if pooled and _is_sqlite_file(url):
            kwargs.update(pool_size=max(pool_size, SQLITE_POOL_SIZE), max_overflow=-1)
        engine = create_engine(url, **kwargs)
        _transactional_sqlite(engine)
        return engine
    if pooled:
        kwargs["pool_size"] = pool_size
    kwargs["connect_args"] = server_connect_args(url)
    if transaction_pooler and backend == "postgresql":
        kwargs["connect_args"]["prepare_threshold"] = None
    else:
        statement_timeout.apply(kwargs, url, statement_timeout_ms)
    engine = create_engine(url, **kwargs)
    if statement_timeout_ms and backend == "mysql":
        statement_timeout.limit_mysql_statements(engine, statement_timeout_ms)
    return engine


def server_connect_args(url: URL) -> dict[str, Any]:
    """The arguments tenantry adds to the (sync) driver's for ``url``'s database server."""
    args: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S}
    if backend_of(url) == "mysql":
        args["charset"] = "utf8mb4"
        if not uses_tls(url):
            # A URL without ssl_ca/ssl_capath/ssl_cert is plain text, as for the mariadb
            # tools tenantry runs (tenantry.db.tls). Left to itself, PyMySQL >= 1.2 tries TLS
            # without checking the server and builds an SSL context, CA bundle and all, for
            # every connection: about 35 ms of CPU each, against 0.4 ms without.
            args["ssl_disabled"] = True
    return args


def describe_connect_error(url: URL, exc: DBAPIError) -> DatabaseUnreachable:
    """Turn a driver's connection error into one readable paragraph without secrets."""
    detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    detail = redact(detail)  # drivers may quote their connection string
    missing = "does not exist" in detail or "Unknown database" in detail
    hint = tls_hint(url, detail) or (
        "Create the database, or run `tenantry init`, which creates missing databases."
        if missing
        else "Check that the server is running and reachable and that the URL's host, port, "
        "user and password are right."
    )
    return DatabaseUnreachable(f"cannot connect to {mask(url)}: {detail}.", hint)


@contextmanager
def connect(engine: Engine, *, begin: bool = False) -> Iterator[Connection]:
    """A connection (in a transaction when ``begin``), with connection errors made readable."""
    try:
        conn = engine.connect()
    except (OperationalError, InterfaceError) as exc:
        raise describe_connect_error(engine.url, exc) from None
    except FileNotFoundError as exc:
        raise unreadable_tls_file(engine.url, exc) from None
    except UnicodeError:
        # A driver that cannot encode a credential says which character: never show that.
        raise DatabaseUnreachable(
            f"cannot connect to {mask(engine.url)}: the driver cannot encode its user or password.",
            "Use characters the database's driver can send (PyMySQL: Latin-1 passwords).",
        ) from None
    with conn:
        if begin:
            with conn.begin():
                yield conn
        else:
            yield conn
