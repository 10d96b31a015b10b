"""A migration lock per database, held by the connection that migrates it.

PostgreSQL takes a session advisory lock (scoped to the database by PostgreSQL, and named
after the connection's schema when it is not ``public``: the stores of a shared database, one
schema each, migrate side by side), MySQL/MariaDB
a named ``GET_LOCK`` (named after the database too: MySQL's lock names are server-wide, and one
tenant's migration must not block another's on the same server); both belong to
the connection, so a killed run's lock disappears with its connection and never blocks the
next run. SQLite's migration transaction takes the database's write lock up front
(``BEGIN IMMEDIATE``, see :func:`tenantry.db.engines.writer`), which a dead process releases
too.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from tenantry.db.engines import immediate, single_statements, sqlite_busy_timeout_ms
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


def _lock_scope(conn: Connection) -> str | None:
    """What the lock's name must carry besides the role: on MySQL the database (the server
    says which one the connection is on: a shared engine's URL may not); on PostgreSQL the
    schema a shared-database store lives in (advisory locks are per database, and each
    schema is a store of its own), None in ``public`` (a database of its own: the name
    earlier versions used, so both keep excluding each other)."""
    if conn.dialect.name == "postgresql":
        with single_statements(conn):  # one round trip, not BEGIN, SELECT and COMMIT
            schema = conn.scalar(text("SELECT current_schema()"))
        conn.commit()  # the lock is taken outside a transaction
        return None if schema in (None, "public") else f"schema:{schema}"
    return str(conn.scalar(text("SELECT DATABASE()")))


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
        conn.exec_driver_sql(f"PRAGMA busy_timeout={wait_ms}")
        conn.rollback()
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
            if not conn.closed:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={sqlite_busy_timeout_ms()}")
                conn.rollback()
        return
    name = lock_name(role, _lock_scope(conn))
    key = zlib.crc32(name.encode()) & 0x7FFFFFFF
    deadline = time.monotonic() + wait_s
    while True:
        with single_statements(conn):
            if dialect == "postgresql":
                got = conn.scalar(
                    text("SELECT pg_try_advisory_lock(:c, :k)"), {"c": _PG_CLASS, "k": key}
                )
            else:
                got = conn.scalar(text("SELECT GET_LOCK(:n, 0)"), {"n": name}) == 1
            conn.commit()  # the probe's implicit transaction must not stay open around DDL
        if got:
            break
        if time.monotonic() >= deadline:
            raise Conflict(
                "another migration holds this database's lock.",
                "Wait for it to finish (a crashed run's lock goes away with its connection), "
                "then run again.",
            )
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


@contextmanager
def migration_transaction(conn: Connection, role: str, *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the migration lock of the database on ``conn`` and one transaction for the block:
    committed when the block ends, rolled back when it raises (DDL included where the
    backend's DDL is transactional). ``conn`` must not be in a transaction yet."""
    with migration_lock(conn, role, wait_s=wait_s), immediate(conn).begin():
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


def bound_lock_waits(conn: Connection, seconds: float) -> None:
    """Make the statements of the transaction on ``conn`` give up waiting for another
    session's lock after ``seconds`` (PostgreSQL ``lock_timeout`` for this transaction;
    MySQL/MariaDB's metadata ``lock_wait_timeout`` for the session; SQLite has its busy
    timeout)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{max(1, int(seconds * 1000))}ms'")
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
