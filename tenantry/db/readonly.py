"""Making a database read-only after its data moved elsewhere, per backend, as far as it can be.

- PostgreSQL: ``ALTER DATABASE … SET default_transaction_read_only = on``. The setting applies
  to new sessions only, so the database's other sessions are ended: clients reconnect and get
  read-only transactions.
- SQLite: the WAL is folded into the main file, the file switched to a rollback journal (so it
  is one self-contained file) and its mode set to 0400. Processes that already hold it open
  keep their access; the operating system checks permissions only at open (and root ignores
  them).
- MySQL/MariaDB have no per-database read-only switch (``read_only`` is server-wide, and
  revoking grants would touch users tenantry does not own): nothing is changed, and the
  outcome says so.
"""

from __future__ import annotations

import sqlite3
import stat
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL

from tenantry.db.engines import connect, make_engine, sqlite_path
from tenantry.db.urls import backend_of

SQLITE_READ_ONLY_MODE = stat.S_IRUSR  # 0o400: read-only, and private like the data dir


@dataclass(frozen=True)
class ReadOnlyOutcome:
    """Whether the database was made read-only, and how (or why not)."""

    applied: bool
    how: str

    def document(self) -> dict[str, Any]:
        """As JSON for a move's details."""
        return asdict(self)


def make_read_only(url: URL) -> ReadOnlyOutcome:
    """Make the database at ``url`` refuse writes from now on, where its backend allows it.

    Errors from the database propagate; the caller decides whether they matter.
    """
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
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=10000")
        # Everything into the main file, and no -wal/-shm files a reader would need to write.
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode=DELETE")
    finally:
        conn.close()
    path.chmod(SQLITE_READ_ONLY_MODE)
    return ReadOnlyOutcome(True, f"file mode set to 0400 ({path.name})")


def _postgresql(url: URL) -> ReadOnlyOutcome:
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            name = conn.dialect.identifier_preparer.quote(str(url.database))
            conn.exec_driver_sql(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
            ended = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    return ReadOnlyOutcome(
        True, f"default_transaction_read_only = on; {ended} other session(s) ended"
    )
