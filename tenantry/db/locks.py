"""A migration lock per database, held by the connection that migrates it.

PostgreSQL takes an advisory lock (scoped to the database by PostgreSQL, and named
after the connection's schema when it is not ``public``: the stores of a shared database, one
schema each, migrate side by side; the session's, or a migration transaction's own, see
:func:`migration_transaction`), MySQL/MariaDB
a named ``GET_LOCK`` (named after the database too: MySQL's lock names are server-wide, and one
tenant's migration must not block another's on the same server); both belong to
the connection, so a killed run's lock disappears with its connection and never blocks the
next run. SQLite's migration transaction takes the database's write lock up front
(``BEGIN IMMEDIATE``, see :func:`tenantry.db.engines.writer`), which a dead process releases
too.
"""

from __future__ import annotations

import hashlib
import re
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from tenantry.db.engines import (
    immediate_transaction,
    single_statements,
    sqlite_busy_timeout_ms,
    sqlite_pragma,
)
from tenantry.errors import Conflict

#: The advisory-lock key space tenantry uses (the first of PostgreSQL's two int4 keys).
_PG_CLASS = 0x7E1A
POLL_S = 0.05
SQLITE_MIN_WAIT_S = 1.0


def lock_name(role: str, database: str | None = None) -> str:
    """The lock's name: one per role, so a tenant lock never blocks a master migration; with
    ``database`` (MySQL, whose lock names are server-wide; a PostgreSQL schema) one per
    database or schema too, as a digest of its name (MySQL allows 64 characters)."""
    if database is None:
        return f"tenantry_migrate_{role}"
    digest = hashlib.sha256(database.encode()).hexdigest()[:24]
    return f"tenantry_migrate_{role}_{digest}"


def _mysql_database(conn: Connection) -> str:
    """What a MySQL lock's name must carry besides the role: the database (the server says
    which one the connection is on: a shared engine's URL may not)."""
    return str(conn.scalar(text("SELECT DATABASE()")))


def _pg_scope(schema: str | None) -> str | None:
    """On PostgreSQL the schema a shared-database store lives in (advisory locks are per
    database, and each schema is a store of its own), None in ``public`` (a database of its
    own: the name earlier versions used, so both keep excluding each other)."""
    return None if schema in (None, "public") else f"schema:{schema}"


def _pg_key(role: str, schema: str | None) -> int:
    """The advisory-lock key (second int4) of ``role``'s lock in ``schema``."""
    return zlib.crc32(lock_name(role, _pg_scope(schema)).encode()) & 0x7FFFFFFF


#: A ``search_path`` given in the connection's startup options (a shared-schema store's URL).
_SEARCH_PATH_OPTION = re.compile(r"search_path\s*=\s*\"?([^\s,\"]+)")


def _schema_guess(conn: Connection) -> str:
    """The schema the PostgreSQL connection most likely works in, read from its startup
    options without asking the server (``public`` when they name none). Only a guess: the
    lock statements take the lock only when the server's ``current_schema()`` agrees."""
    # psycopg's (and psycopg2's) PQoptions: read from libpq, no round trip.
    info = getattr(conn.connection.dbapi_connection, "info", None)
    found = _SEARCH_PATH_OPTION.search(str(getattr(info, "options", None) or ""))
    return found.group(1) if found else "public"


#: PostgreSQL: the schema and, when it is the one guessed, the lock tried, in one round trip
#: (:func:`_pg_try`); ``{fn}`` is the session or the transaction variant of the lock.
_PG_TRY = (
    "SELECT current_schema() AS schema, CASE WHEN coalesce(current_schema(), 'public') = "
    ":guess THEN {fn}(:c, :k) END AS got{extra}"
)
_PG_TRY_SESSION = text(_PG_TRY.format(fn="pg_try_advisory_lock", extra=""))
_PG_TRY_XACT = text(_PG_TRY.format(fn="pg_try_advisory_xact_lock", extra=""))
#: The transaction's lock wait bound set in the same statement (``SET LOCAL lock_timeout``).
_PG_TRY_XACT_BOUNDED = text(
    _PG_TRY.format(
        fn="pg_try_advisory_xact_lock", extra=", set_config('lock_timeout', :timeout, true)"
    )
)


def _pg_try(
    conn: Connection, role: str, *, xact: bool, lock_timeout_s: float | None = None
) -> tuple[bool, int]:
    """Try the PostgreSQL migration lock of the connection's schema once: one statement when
    the schema is the one :func:`_schema_guess` expects (two otherwise). ``xact``: the
    transaction's lock (released when it ends; ``conn`` must be in a transaction) rather than
    the session's. Both kinds share one key space, so each excludes the other. Whether it
    was taken, and its key."""
    guess = _schema_guess(conn)
    params: dict[str, object] = {"c": _PG_CLASS}
    statement = _PG_TRY_XACT if xact else _PG_TRY_SESSION
    if xact and lock_timeout_s is not None:
        statement = _PG_TRY_XACT_BOUNDED
        params["timeout"] = _pg_timeout(lock_timeout_s)
    for _ in range(2):
        key = _pg_key(role, guess)
        row = conn.execute(statement, {**params, "guess": guess, "k": key}).one()
        if row.got is not None:
            return bool(row.got), key
        guess = row.schema or "public"  # guessed wrong: nothing was taken; now it is known
    raise AssertionError("the schema changed between two statements")  # nothing sets it


@contextmanager
def migration_lock(conn: Connection, role: str, *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the migration lock of the database on ``conn`` for the block.

    Waits up to ``wait_s`` seconds, then raises :class:`Conflict` naming who to wait for.
    Must be entered outside a transaction on PostgreSQL and MySQL (it is a session lock).
    """
    dialect = conn.dialect.name
    if dialect == "sqlite":
        # The migration transaction is BEGIN IMMEDIATE, exclusive for writers: waiting for
        # the lock is SQLite's busy timeout (at least a second: ordinary writes hold it
        # briefly).
        wait_ms = int(max(wait_s, SQLITE_MIN_WAIT_S) * 1000)
        if conn.in_transaction():
            conn.rollback()  # a read the caller left open: the lock is taken by a new one
        sqlite_pragma(conn, f"busy_timeout={wait_ms}")
        try:
            yield
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
            raise Conflict(
                "another migration (or a long write) holds this SQLite database's write lock.",
                "Wait for it to finish, then run again.",
            ) from None
        finally:
            if not conn.closed and not conn.invalidated:
                sqlite_pragma(conn, f"busy_timeout={sqlite_busy_timeout_ms()}")
        return
    name = "" if dialect == "postgresql" else lock_name(role, _mysql_database(conn))
    key = 0  # PostgreSQL's: known once tried (it depends on the connection's schema)
    deadline = time.monotonic() + wait_s
    while True:
        with single_statements(conn):
            if dialect == "postgresql":
                got, key = _pg_try(conn, role, xact=False)
            else:
                got = conn.scalar(text("SELECT GET_LOCK(:n, 0)"), {"n": name}) == 1
            conn.commit()  # the probe's implicit transaction must not stay open around DDL
        if got:
            break
        if time.monotonic() >= deadline:
            raise _held()
        time.sleep(POLL_S)
    try:
        yield
    finally:
        if not conn.closed and not conn.invalidated:
            if conn.in_transaction():
                conn.rollback()
            with single_statements(conn):
                if dialect == "postgresql":
                    conn.execute(
                        text("SELECT pg_advisory_unlock(:c, :k)"), {"c": _PG_CLASS, "k": key}
                    )
                else:
                    conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": name})
                conn.commit()


def _held() -> Conflict:
    """The refusal when another migration holds the lock past the wait."""
    return Conflict(
        "another migration holds this database's lock.",
        "Wait for it to finish (a crashed run's lock goes away with its connection), "
        "then run again.",
    )


@contextmanager
def migration_transaction(
    conn: Connection, role: str, *, wait_s: float = 0.0, lock_timeout_s: float | None = None
) -> Iterator[None]:
    """Hold the migration lock of the database on ``conn`` and one transaction for the block:
    committed when the block ends, rolled back when it raises (DDL included where the
    backend's DDL is transactional). ``conn`` must not be in a transaction yet.
    ``lock_timeout_s``: the statements of the block wait that long at most for another
    session's lock (:func:`bound_lock_waits`).

    On PostgreSQL the lock is the transaction's own advisory lock, taken by the
    transaction's first statement (with its lock wait bound) and let go by its ``COMMIT`` or
    ``ROLLBACK``: no round trips of their own for the schema, the lock's release or
    ``SET LOCAL``. It shares its keys with :func:`migration_lock`'s session lock, so each
    excludes the other (and the session locks of earlier versions).
    """
    if conn.dialect.name != "postgresql":
        with migration_lock(conn, role, wait_s=wait_s), immediate_transaction(conn):
            if lock_timeout_s is not None:
                bound_lock_waits(conn, lock_timeout_s)
            yield
        return
    if conn.in_transaction():
        conn.commit()  # a read the caller left open (autobegin), as the session lock ends it
    deadline = time.monotonic() + wait_s
    while True:
        transaction = conn.begin()
        try:
            got, _key = _pg_try(conn, role, xact=True, lock_timeout_s=lock_timeout_s)
        except BaseException:
            transaction.rollback()
            raise
        if got:
            break
        transaction.rollback()
        if time.monotonic() >= deadline:
            raise _held()
        time.sleep(POLL_S)
    with transaction:  # commits when the block ends, rolls back when it raises
        yield


#: How long one statement of a migration waits for a lock another session holds on a table
#: (a backup's snapshot, a long transaction) before the attempt gives up. While DDL waits,
#: every query on that table queues behind it; and a holder that itself waits for a query
#: queued behind the DDL (a backup whose snapshot connection holds the tables while pg_dump
#: waits) would never let go: a deadlock no server can see.
DDL_LOCK_TIMEOUT_S = 10.0
#: Attempts of a migration that ran out of lock wait, on PostgreSQL (its DDL rolls back
#: whole, so trying again is safe); MySQL/MariaDB DDL commits statement by statement, so
#: there the first timeout is the answer.
DDL_LOCK_ATTEMPTS = 3


def _pg_timeout(seconds: float) -> str:
    """``seconds`` as a PostgreSQL ``lock_timeout`` (at least a millisecond: 0 means none)."""
    return f"{max(1, int(seconds * 1000))}ms"


def bound_lock_waits(conn: Connection, seconds: float) -> None:
    """Make the statements of the transaction on ``conn`` give up waiting for another
    session's lock after ``seconds`` (PostgreSQL ``lock_timeout`` for this transaction;
    MySQL/MariaDB's metadata ``lock_wait_timeout`` for the session; SQLite has its busy
    timeout)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{_pg_timeout(seconds)}'")
    elif conn.dialect.name in ("mysql", "mariadb"):
        conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {max(1, round(seconds))}")


def lock_wait_ran_out(exc: BaseException) -> bool:
    """Whether ``exc`` is a lock wait that :func:`bound_lock_waits` cut short (PostgreSQL
    SQLSTATE 55P03; MySQL/MariaDB error 1205)."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) == "55P03":
        return True
    args: tuple[object, ...] = tuple(getattr(orig, "args", ()))
    return bool(args) and args[0] == 1205
