"""A move's write fence: the writes in flight on the source are waited for, no longer than they
take, and none lands there unseen afterwards.

A move blocks the store's writes in master before it copies (every write request checks the
block before it routes), but a request that passed that check just before the block can still
be on its way to the source. :func:`fence_writes` deals with those, per backend, right after
the block and before the copy:

- **PostgreSQL, a database of its own**: the database is made read-only
  (``default_transaction_read_only``, as :mod:`tenantry.db.readonly` does), so sessions opened
  from then on cannot write, and the sessions opened before are ended once they are idle (a
  pool's ping reconnects them, read-only, unseen by its client). A session whose transaction
  wrote (it has a transaction id or holds a write lock) is waited for until it commits or rolls
  back; one whose transaction wrote nothing is given :data:`READER_GRACE_S` to finish its read
  and is then ended (it could still write). When none of them is left, nothing can write to
  the source: the copy is the store's last state, and reads are served all along.
- **PostgreSQL, a store's schema in a shared database**: the store's tenant role loses INSERT,
  UPDATE and DELETE on the schema's tables (checked at each statement, so in open sessions
  too), and the transactions holding a write lock on one of them are waited for.
- **SQLite**: ``BEGIN IMMEDIATE`` on the source waits for the one transaction that may be
  writing the file, then is released. SQLite cannot refuse writes for all connections, so the
  fence keeps a connection open and :meth:`WriteFence.confirm`, just before the switch, checks
  with ``PRAGMA data_version`` that no other connection committed to the file since the fence:
  a write that slipped in fails the move (rolled back) rather than being left behind.
- **MySQL/MariaDB**: ``LOCK TABLES … READ`` on every table of the database waits for the
  transactions that wrote to one of them (a writer keeps its metadata lock until its
  transaction ends; readers pass), then is released at once. (Not ``innodb_trx``: InnoDB
  refreshes it only when nobody read it for 0.1 s, so polling it keeps it stale.) The source
  stays writable (there is no per-database read-only switch); the verification catches a
  later write.

A writer still running after ``timeout`` seconds (``TENANTRY_MOVE_WRITE_FENCE_SECONDS``) fails
the move with a :class:`~tenantry.errors.Conflict` naming it. The move's rollback makes the
source writable again from what :func:`~tenantry.db.readonly.writable_state` recorded before
the fence; the writer itself is never ended by the fence, and commits to the source, which is
still the store's database.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError

from tenantry.db import shared_schemas
from tenantry.db.engines import connect, make_engine, sqlite_path
from tenantry.db.logins import admin_connection
from tenantry.db.pg_sessions import WRITE_LOCKS, end_sessions_before
from tenantry.db.readonly import read_only_database, schema_role
from tenantry.db.urls import backend_of, mask
from tenantry.errors import Conflict

#: How long a PostgreSQL session reading (in a transaction that wrote nothing) when the fence
#: is raised may finish before it is ended.
READER_GRACE_S = 2.0
#: Between two looks at the transactions still in flight.
POLL_S = 0.01
#: PostgreSQL's "cannot execute … in a read-only transaction".
_PG_READ_ONLY_TRANSACTION = "25006"


@dataclass
class WriteFence:
    """A fence raised on a source: how (as recorded in the move's details), and, on SQLite,
    the connection that tells whether anything was committed since."""

    applied_read_only: bool
    how: str
    waited_s: float
    #: PostgreSQL: when the database became read-only (sessions opened since are read-only).
    read_only_since: str | None = None
    _sqlite: sqlite3.Connection | None = field(default=None, repr=False)
    _version: int | None = field(default=None, repr=False)

    def document(self) -> dict[str, Any]:
        """As JSON for a move's details."""
        return {
            "read_only": self.applied_read_only,
            "how": self.how,
            "waited_s": round(self.waited_s, 3),
        }

    def confirm(self, url: URL) -> None:
        """Raise :class:`Conflict` if a write reached the source since the fence (SQLite: any
        other connection's commit); then let go of the fence's connection."""
        conn, self._sqlite = self._sqlite, None
        if conn is None:
            return
        try:
            now = int(conn.execute("PRAGMA data_version").fetchone()[0])
        finally:
            conn.close()
        if now != self._version:
            raise Conflict(
                f"a write reached the source {mask(url)} after the move's write fence (a "
                "request that passed the write block just before it was set); the move was "
                "rolled back and the store keeps its source, with that write.",
                "Run the move again.",
            )

    def close(self) -> None:
        """Let go of the fence's connection (a move rolled back)."""
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None


def refused_by_fence(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL refusing a write in a read-only database: a move's fence
    (or a moved store's kept source)."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == _PG_READ_ONLY_TRANSACTION


def fence_writes(
    url: URL, timeout: float, role: str | None = None, *, before: dict[str, Any] | None = None
) -> WriteFence:
    """Raise the write fence on the database at ``url`` (a move's source; ``role``: a
    shared-schema store's tenant role), waiting up to ``timeout`` seconds for the writes in
    flight; see the module's description. A writer that outlasts it is a :class:`Conflict`.

    ``before``, the source's :func:`~tenantry.db.readonly.writable_state`, gets
    ``read_only_since`` as soon as a PostgreSQL database is read-only, also when the fence
    then fails: making it writable again ends only the sessions opened since."""
    started = time.monotonic()
    schema = shared_schemas.schema_of(url)
    if schema is not None:
        shared_schemas.revoke_writes(url, str(url.database), schema, schema_role(url, schema, role))
        waited = _pg_schema_writers(url, schema, started, timeout)
        return WriteFence(
            True,
            f"INSERT, UPDATE, DELETE revoked from {role} on {schema}; "
            f"{waited} write transaction(s) in flight waited for",
            time.monotonic() - started,
        )
    backend = backend_of(url)
    if backend == "postgresql":
        return _pg_database(url, started, timeout, {} if before is None else before)
    if backend == "sqlite":
        return _sqlite(url, started, timeout)
    _mysql_writers(url, timeout)
    return WriteFence(
        False,
        "the write transactions in flight waited for (LOCK TABLES … READ, released at once); "
        "the source stays writable (MySQL/MariaDB have no per-database read-only switch)",
        time.monotonic() - started,
    )


def _too_long(url: URL, timeout: float, writers: list[str]) -> Conflict:
    return Conflict(
        f"a write transaction on the source {mask(url)} begun before the move did not finish "
        f"within the move's write fence timeout of {timeout:g} s ({'; '.join(writers)}); the "
        "move was rolled back and the store takes writes again.",
        "End that transaction (or let it finish), or raise TENANTRY_MOVE_WRITE_FENCE_SECONDS, "
        "then run the move again.",
    )


# ------------------------------------------------------------------ PostgreSQL


def _pg_database(url: URL, started: float, timeout: float, before: dict[str, Any]) -> WriteFence:
    with admin_connection(url, str(url.database)) as conn:
        read_only_database(conn, str(url.database))
        fenced = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
        before["read_only_since"] = fenced.isoformat()
        ended, writers = _end_sessions_before(conn, url, fenced, started, timeout)
    return WriteFence(
        True,
        f"default_transaction_read_only = on; {writers} write transaction(s) in flight waited "
        f"for; {ended} other session(s) ended",
        time.monotonic() - started,
        read_only_since=fenced.isoformat(),
    )


def _end_sessions_before(
    conn: Connection, url: URL, fenced: Any, started: float, timeout: float
) -> tuple[int, int]:
    """End the sessions opened before ``fenced``: idle ones at once, readers after the grace,
    writers once their transaction ended; how many were ended, and how many writers were
    waited for. Any still there at the timeout (a writer, or one that could not be ended)
    is a :class:`Conflict`."""
    done = end_sessions_before(
        conn,
        fenced,
        grace_until=started + min(READER_GRACE_S, timeout / 2),
        give_up_at=started + timeout,
        wait_for_writers=True,
        poll_s=POLL_S,
    )
    if done.left:
        raise _too_long(
            url,
            timeout,
            [
                f"session pid {s.pid}, its transaction begun {s.xact_start}"
                + ("" if s.writing else ", not writing but not ended")
                for s in done.left
            ],
        )
    return done.ended, done.writers


def _pg_schema_writers(url: URL, schema: str, started: float, timeout: float) -> int:
    """Wait until no other transaction holds a write lock on a table of ``schema``; how many
    were waited for."""
    holders = text(
        "SELECT DISTINCT l.pid, a.xact_start FROM pg_locks l "
        "JOIN pg_class c ON c.oid = l.relation "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid() "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        f"AND n.nspname = :schema AND l.mode IN {WRITE_LOCKS}"
    )
    seen: set[int] = set()
    with admin_connection(url, str(url.database)) as conn:
        while True:
            rows = conn.execute(holders, {"schema": schema}).all()
            seen |= {row.pid for row in rows}
            if not rows:
                return len(seen)
            if time.monotonic() - started >= timeout:
                raise _too_long(
                    url,
                    timeout,
                    [f"session pid {r.pid}, its transaction begun {r.xact_start}" for r in rows],
                )
            time.sleep(POLL_S)


# ------------------------------------------------------------------ SQLite


def _sqlite(url: URL, started: float, timeout: float) -> WriteFence:
    path = sqlite_path(url)
    assert path is not None
    # mode=rw: a missing file is an error, never a new empty database.
    conn = sqlite3.connect(
        f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None, timeout=timeout
    )
    try:
        # WAL, as tenantry's engines open it: a file a rolled-back move left in rollback-journal
        # mode would otherwise be switched by the copy's first connection, and that switch
        # would count as a commit since the fence.
        with contextlib.suppress(sqlite3.OperationalError):
            conn.execute("PRAGMA journal_mode=WAL")
        try:
            conn.execute("BEGIN IMMEDIATE")  # waits (busy handler) for the writer in flight
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            raise _too_long(url, timeout, [f"the writer holding {path.name}"]) from None
        version = int(conn.execute("PRAGMA data_version").fetchone()[0])
        conn.execute("ROLLBACK")
    except BaseException:
        conn.close()
        raise
    return WriteFence(
        False,
        "the write in flight (if any) waited for; commits since are checked before the switch",
        time.monotonic() - started,
        _sqlite=conn,
        _version=version,
    )


# ------------------------------------------------------------------ MySQL / MariaDB

#: MariaDB's "Lock wait timeout exceeded".
_MYSQL_LOCK_WAIT_TIMEOUT = 1205


def _mysql_writers(url: URL, timeout: float) -> None:
    """Wait for the transactions that wrote to one of the database's tables: ``LOCK TABLES
    … READ`` on all of them waits for every writer's metadata lock (held until its
    transaction ends) and lets readers through; released at once."""
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {max(1, math.ceil(timeout))}")
            names = conn.scalars(
                text(
                    "SELECT table_name FROM information_schema.tables "
                    "WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'"
                )
            ).all()
            if not names:
                return
            q = conn.dialect.identifier_preparer.quote
            try:
                conn.exec_driver_sql("LOCK TABLES " + ", ".join(f"{q(n)} READ" for n in names))
            except OperationalError as exc:
                if getattr(exc.orig, "args", (None,))[0] != _MYSQL_LOCK_WAIT_TIMEOUT:
                    raise
                raise _too_long(url, timeout, ["a transaction that wrote to its tables"]) from None
            conn.exec_driver_sql("UNLOCK TABLES")
    finally:
        engine.dispose()
