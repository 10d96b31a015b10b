"""What went wrong with a database, in one place for every surface that reports it.

A driver's error is never shown as it is (its text can name hosts and users). The HTTP API
answers one of three kinds with a 503, and the CLI prints the same kind and cause with its
exit status: the database was busy (a lock, or every pooled connection, held for longer than
its timeout), a statement ran past the statement timeout, or the database could not be used
at all. What each surface adds is its own: the API how long to wait (Retry-After), the CLI
that the command can be run again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from tenantry.db.sqlite_writers import is_lock_timeout
from tenantry.db.statement_timeout import is_statement_timeout

#: Seconds to wait before retrying after a lock timeout (the writer holding it is usually
#: done by then), and after anything else here (a pool drained, a server restarting).
BUSY_RETRY_AFTER_S = 1
UNAVAILABLE_RETRY_AFTER_S = 5


@dataclass(frozen=True)
class Trouble:
    """One database error told without the driver's text."""

    #: The error's type as the API's body and the CLI's JSON name it.
    kind: str
    #: What happened, one clause without its full stop; ``{needs}`` stands for what needed
    #: the database ("this request", "this command").
    cause: str
    #: Seconds a caller should wait before trying again.
    retry_after_s: int
    #: What to do besides trying again (None: nothing more); ``{needs}`` as in ``cause``.
    advice: str | None = None

    def said_for(self, needs: str) -> str:
        """The cause, for ``needs`` ("this request", "this command")."""
        return self.cause.format(needs=needs)

    def advice_for(self, needs: str) -> str | None:
        """The advice, for ``needs`` ("the request", "the command")."""
        return self.advice.format(needs=needs) if self.advice else None


_LOCKED = Trouble(
    "DatabaseBusy",
    "the database stayed locked by another writer for longer than its busy timeout "
    "(TENANTRY_SQLITE_BUSY_TIMEOUT_MS)",
    BUSY_RETRY_AFTER_S,
    "if a long job holds the database (a fleet run, an import, a restore), let it finish first.",
)
_POOL_DRAINED = Trouble(
    "DatabaseBusy",
    "every connection to a database {needs} needs stayed in use for longer than the pool's timeout",
    UNAVAILABLE_RETRY_AFTER_S,
)
_STATEMENT_TIMEOUT = Trouble(
    "StatementTimeout",
    "a database statement ran longer than the statement timeout and was cancelled",
    UNAVAILABLE_RETRY_AFTER_S,
    "if it keeps happening, {needs} asks too much at once (the limit is "
    "TENANTRY_STATEMENT_TIMEOUT_MS).",
)


def database_trouble(exc: BaseException) -> Trouble | None:
    """The trouble ``exc`` is, or None when it is not a database's error that waiting can
    get past (a domain error, a bug)."""
    if is_statement_timeout(exc):  # the server answered (any DBAPI error class): too slow
        return _STATEMENT_TIMEOUT
    if not isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        return None
    if is_lock_timeout(exc):
        return _LOCKED
    if isinstance(exc, PoolTimeout):
        return _POOL_DRAINED
    return Trouble(
        "DatabaseUnavailable",
        f"a database {{needs}} needs could not be used ({type(exc).__name__}; the driver's "
        "message is not shown)",
        UNAVAILABLE_RETRY_AFTER_S,
        "if it persists, its server needs checking (`tenantry doctor` says whether it is up "
        "and reachable).",
    )
