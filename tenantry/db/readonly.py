"""Making a database read-only after its data moved elsewhere, per backend, as far as it can be.

- PostgreSQL: ``ALTER DATABASE … SET default_transaction_read_only = on``. The setting applies
  to new sessions only, so the database's other client sessions are ended
  (:mod:`tenantry.db.pg_sessions`): clients reconnect and get read-only transactions. Idle
  sessions are ended at once (a pool's ping finds them gone and reconnects, unseen by its
  client); a session inside a statement or a transaction is given
  up to :data:`PG_INFLIGHT_GRACE_S` to finish first, so a read being served at the switch is
  answered rather than cut off. Past that, every other session is ended regardless.
- SQLite: the WAL is folded into the main file, the file switched to a rollback journal (so it
  is one self-contained file) and its mode set to 0400. Lock contention is waited for (the
  busy timeout); a file another process keeps open (a running ``tenantry up``) cannot leave
  WAL mode, so it keeps its -wal/-shm files and only its mode changes, and the outcome says
  so. Processes that already hold it open keep their access; the operating system checks
  permissions only at open (and root ignores them).

:func:`make_writable` undoes it (a move that fails after this step is rolled back), from the
state :func:`writable_state` recorded before.
- A store's schema in a shared PostgreSQL database (a URL confined to one schema, see
  :func:`~tenantry.db.shared_schemas.schema_url`): its tenant role loses INSERT, UPDATE and
  DELETE on the schema's tables (:func:`~tenantry.db.shared_schemas.revoke_writes`); the
  database and its other stores are untouched.
- MySQL/MariaDB have no per-database read-only switch (``read_only`` is server-wide, and
  revoking grants would touch users tenantry does not own): nothing is changed, and the
  outcome says so.
"""

from __future__ import annotations

import sqlite3
import stat
import time
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.engine import URL

from tenantry.db import shared_schemas
from tenantry.db.engines import connect, make_engine, sqlite_busy_timeout_ms, sqlite_path
from tenantry.db.pg_sessions import end_sessions_before
from tenantry.db.urls import backend_of, mask
from tenantry.errors import DatabaseAdminError

SQLITE_READ_ONLY_MODE = stat.S_IRUSR  # 0o400: read-only, and private like the data dir
#: How long a PostgreSQL session busy in a statement or transaction may finish before it is
#: ended (writes are already refused by then: only reads are left in flight).
PG_INFLIGHT_GRACE_S = 2.0
_PG_OTHERS = "datname = current_database() AND pid <> pg_backend_pid()"

#: What makes one session's transactions read-only, per backend.
_SESSION_READ_ONLY = {
    "sqlite": "PRAGMA query_only = ON",
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
}


def read_only_engine(url: URL) -> Engine:
    """An unpooled engine whose every connection refuses writes (an SQL text from a user,
    such as ``tenantry recover --where``, runs there).

    The session setting is made as each connection opens, before SQLAlchemy sees it.
    """
    engine = make_engine(url, pooled=False)
    statement = _SESSION_READ_ONLY[backend_of(url)]

    @event.listens_for(engine, "connect")
    def _read_only(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()
        # A session setting, not data; PostgreSQL keeps it only once its transaction ends.
        dbapi_conn.commit()

    return engine


@dataclass(frozen=True)
class ReadOnlyOutcome:
    """Whether the database was made read-only, and how (or why not)."""

    applied: bool
    how: str

    def document(self) -> dict[str, Any]:
        """As JSON for a move's details."""
        return asdict(self)


def make_read_only(url: URL, role: str | None = None) -> ReadOnlyOutcome:
    """Make the database at ``url`` refuse writes from now on, where its backend allows it
    (``role``: the tenant role of a shared-schema store, whose schema ``url`` is confined to).

    Errors from the database propagate; the caller decides whether they matter.
    """
    schema = shared_schemas.schema_of(url)
    if schema is not None:
        shared_schemas.revoke_writes(url, str(url.database), schema, schema_role(url, schema, role))
        return ReadOnlyOutcome(True, f"INSERT, UPDATE, DELETE revoked from {role} on {schema}")
    backend = backend_of(url)
    if backend == "sqlite":
        return _sqlite(url)
    if backend == "postgresql":
        return _postgresql(url)
    return ReadOnlyOutcome(
        False,
        "MySQL/MariaDB have no per-database read-only switch; the source database was left "
        "writable. Nothing routes to it any more: do not write to it by hand.",
    )


def _sqlite(url: URL) -> ReadOnlyOutcome:
    path = sqlite_path(url)
    assert path is not None
    # The driver itself, outside any transaction: the journal mode cannot change inside one.
    conn = sqlite3.connect(path, isolation_level=None, timeout=sqlite_busy_timeout_ms() / 1000)
    try:
        # Everything into the main file, and no -wal/-shm files a reader would need to write.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        left_wal = _leave_wal(conn)
    finally:
        conn.close()
    path.chmod(SQLITE_READ_ONLY_MODE)
    if left_wal:
        return ReadOnlyOutcome(True, f"file mode set to 0400 ({path.name})")
    return ReadOnlyOutcome(
        True,
        f"file mode set to 0400 ({path.name}); another process still has it open, so it "
        "stays in WAL mode with its -wal/-shm files",
    )


def _leave_wal(conn: sqlite3.Connection) -> bool:
    """Switch to a rollback journal, waiting up to the busy timeout; False when another
    connection kept the file open all along (SQLite refuses at once, without its busy
    handler, while any other connection has a WAL database open)."""
    deadline = time.monotonic() + sqlite_busy_timeout_ms() / 1000
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode=DELETE").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            mode = None
        if mode is not None and str(mode[0]).lower() == "delete":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _postgresql(url: URL) -> ReadOnlyOutcome:
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            read_only_database(conn, str(url.database))
            ended = _end_sessions(conn)
    finally:
        engine.dispose()
    return ReadOnlyOutcome(
        True, f"default_transaction_read_only = on; {ended} other session(s) ended"
    )


def read_only_database(conn: Connection, database: str) -> None:
    """Make PostgreSQL ``database`` refuse writes in the sessions opened from now on (on an
    AUTOCOMMIT connection; the sessions already open are the caller's to end)."""
    name = conn.dialect.identifier_preparer.quote(database)
    # This session may have begun read-only (a move's fence did it already): ALTER DATABASE
    # is refused in one.
    conn.exec_driver_sql("SET default_transaction_read_only = off")
    conn.exec_driver_sql(f"ALTER DATABASE {name} SET default_transaction_read_only = on")


def _end_sessions(conn: Connection) -> int:
    """End the database's other sessions that began before the switch (later ones are
    read-only already): idle ones at once, busy ones once idle or when the grace is over;
    how many were ended."""
    switched = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    grace_until = time.monotonic() + PG_INFLIGHT_GRACE_S
    # A writing session is ended after the grace like any busy one: at a move's switch the
    # fence has already waited for the writers (the store's data is elsewhere now).
    return end_sessions_before(
        conn,
        switched,
        grace_until=grace_until,
        give_up_at=grace_until,
        wait_for_writers=False,
        poll_s=0.02,
    ).ended


def schema_role(url: URL, schema: str, role: str | None) -> str:
    """``role``, the tenant role of the shared-schema store at ``url``; a bug when missing."""
    if role is None:
        raise DatabaseAdminError(
            f"schema {schema} of {mask(url)} is a shared-schema store's: its tenant role is "
            "needed to change its writes, and none was given; nothing was changed.",
            "This is a bug in the caller: report it.",
        )
    return role


def writable_state(url: URL, role: str | None = None) -> dict[str, Any]:
    """What :func:`make_writable` needs to put the database back as it is now (as JSON;
    ``role``: a shared-schema store's tenant role)."""
    if shared_schemas.schema_of(url) is not None:
        return {"role": role}
    path = sqlite_path(url)
    if path is None or not path.exists():
        return {}
    return {"mode": stat.S_IMODE(path.stat().st_mode)}


def make_writable(url: URL, state: dict[str, Any]) -> None:
    """Undo :func:`make_read_only`: the database takes writes again, as before.

    PostgreSQL: the setting is reset and the sessions that started read-only meanwhile are
    ended (they reconnect writable): those opened since ``state["read_only_since"]`` when it
    is recorded (a move's write fence: the older sessions were writable all along), else all
    the database's other sessions. SQLite: the file's mode recorded by
    :func:`writable_state` comes back (the engines switch it to WAL again as they connect).
    """
    schema = shared_schemas.schema_of(url)
    if schema is not None:
        role = state.get("role")
        shared_schemas.grant_writes(
            url, str(url.database), schema, schema_role(url, schema, str(role) if role else None)
        )
        return
    backend = backend_of(url)
    if backend == "sqlite":
        path = sqlite_path(url)
        assert path is not None
        if path.exists():
            path.chmod(int(state.get("mode", 0o644)))
    elif backend == "postgresql":
        engine = make_engine(url, pooled=False)
        try:
            with connect(engine) as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                name = conn.dialect.identifier_preparer.quote(str(url.database))
                # This session began read-only too; ALTER DATABASE is refused in one.
                conn.exec_driver_sql("SET default_transaction_read_only = off")
                conn.exec_driver_sql(f"ALTER DATABASE {name} RESET default_transaction_read_only")
                since = state.get("read_only_since")
                newer = " AND backend_start >= CAST(:since AS timestamptz)" if since else ""
                end = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                conn.execute(text(end + _PG_OTHERS + newer), {"since": since} if since else {})
        finally:
            engine.dispose()
