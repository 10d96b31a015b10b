"""One writer at a time for a SQLite file, handed over as soon as the last one commits.

SQLite lets one transaction write at a time; the others wait in its busy handler, which
sleeps 1, 2, 5, 10, … up to 100 ms between tries whatever the writer ahead of it does. Under
steady writes from several processes (the API storing webhooks, a worker applying them) a
waiter that lost a few times sleeps tens of milliseconds after the lock was free, and those
sleeps are a write's tail latency.

A transaction that will write (``BEGIN IMMEDIATE``, see :func:`tenantry.db.engines.writer`)
first takes an exclusive ``flock`` on a lock file beside the database: the writers of every
process queue there and the next one goes within a fraction of a millisecond of the commit;
SQLite's own lock is then free when it asks. The wait is bounded by the same busy timeout
(then "database is locked", as before), so a writer stuck elsewhere never hangs the others.

Within a process, writers first queue on a lock of the process's own for the file, so one
thread per process polls the lock file. Each poll needs the GIL: with every waiting thread
polling (an API answering 32 clients had about 30 at once), the writer holding the lock got
the GIL a fraction of the time, so its transaction and every wait behind it took longer.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.exc import OperationalError

#: The longest sleep between tries for a lock another writer holds.
MAX_POLL_S = 0.001
#: The lock file is the database file's name with this after it (like -wal and -shm).
LOCK_SUFFIX = "-writer"


def lock_path(database: Path) -> Path:
    """The lock file of a SQLite database file (beside it, like its -wal and -shm)."""
    return database.with_name(database.name + LOCK_SUFFIX)


@dataclass(frozen=True)
class Held:
    """A writer lock taken by :func:`acquire`: the lock file's descriptor and the process's
    own lock for the file, both given back by :func:`release`."""

    fd: int
    local: threading.Lock


_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()


def _local_lock(database: Path) -> threading.Lock:
    """This process's lock for ``database``'s writers (one per file, made on first use)."""
    with _local_guard:
        return _local_locks.setdefault(str(database), threading.Lock())


def _forget_local_locks() -> None:
    # A forked child has none of its parent's threads: a lock one of them held would never
    # be given back there.
    global _local_guard
    _local_guard = threading.Lock()
    _local_locks.clear()


os.register_at_fork(after_in_child=_forget_local_locks)


def acquire(database: Path, timeout_ms: int) -> Held:
    """Take the writer lock of ``database``; hand what it returns to :func:`release`.

    Raises ``sqlite3.OperationalError("database is locked")`` after ``timeout_ms``, as
    SQLite's busy timeout would.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    local = _local_lock(database)
    if not local.acquire(timeout=max(timeout_ms / 1000, 0.0)):
        raise sqlite3.OperationalError("database is locked")
    try:
        return Held(_take_file_lock(database, deadline), local)
    except BaseException:
        local.release()
        raise


def _take_file_lock(database: Path, deadline: float) -> int:
    """The lock file's descriptor, holding its exclusive ``flock``, polled until ``deadline``."""
    fd = os.open(lock_path(database), os.O_RDWR | os.O_CREAT, 0o600)
    pause = 0.00005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise sqlite3.OperationalError("database is locked") from None
            time.sleep(pause)
            pause = min(pause * 2, MAX_POLL_S)
        except BaseException:
            os.close(fd)
            raise


def release(held: Held) -> None:
    """Give the writer lock back (closing the descriptor releases it too)."""
    try:
        fcntl.flock(held.fd, fcntl.LOCK_UN)
    finally:
        os.close(held.fd)
        held.local.release()


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" as SQLAlchemy raises it: another
    writer held the file (its lock, or this queue) for longer than the busy timeout. Nothing
    of the transaction that waited was written."""
    return isinstance(exc, OperationalError) and "database is locked" in str(exc.orig)
