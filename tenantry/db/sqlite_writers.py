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
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import time
from pathlib import Path

#: The longest sleep between tries for a lock another writer holds.
MAX_POLL_S = 0.001
#: The lock file is the database file's name with this after it (like -wal and -shm).
LOCK_SUFFIX = "-writer"


def lock_path(database: Path) -> Path:
    """The lock file of a SQLite database file (beside it, like its -wal and -shm)."""
    return database.with_name(database.name + LOCK_SUFFIX)


def acquire(database: Path, timeout_ms: int) -> int:
    """Take the writer lock of ``database``; the lock's file descriptor, to :func:`release`.

    Raises ``sqlite3.OperationalError("database is locked")`` after ``timeout_ms``, as
    SQLite's busy timeout would.
    """
    fd = os.open(lock_path(database), os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + timeout_ms / 1000
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


def release(fd: int) -> None:
    """Give the writer lock back (closing the descriptor releases it too)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
