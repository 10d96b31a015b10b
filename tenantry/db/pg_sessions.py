"""Ending the PostgreSQL sessions of a database that were opened before a moment.

A database made read-only (``default_transaction_read_only``) keeps the sessions opened before
writable: they are ended so their clients reconnect read-only (a pool's ping does it, unseen by
its client). :func:`end_sessions_before` is the one loop that does it, for the switch of a move
(:mod:`tenantry.db.readonly`) and its write fence (:mod:`tenantry.db.write_fence`). They differ
only in what a session in a writing transaction is owed: the fence waits for it to commit (its
write must reach the copy), the switch ends it after the grace like any busy session (writes are
refused since the fence).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

#: The lock modes a transaction takes on a table it writes to.
WRITE_LOCKS = (
    "('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')"
)
#: Client sessions on this connection's database opened before ``:since`` (autovacuum and
#: other background workers are the server's own: neither waited for nor ended).
_BEFORE = (
    "a.datname = current_database() AND a.pid <> pg_backend_pid() "
    "AND a.backend_type = 'client backend' AND a.backend_start < :since"
)
#: A session whose transaction wrote: it has a transaction id, or holds a write lock.
_WRITING = (
    "(a.backend_xid IS NOT NULL OR EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid "
    f"AND l.locktype = 'relation' AND l.granted AND l.mode IN {WRITE_LOCKS}))"
)
# pg_terminate_backend in the select list, not the WHERE clause: PostgreSQL may evaluate a
# WHERE clause's conditions in any order, and only the filtered sessions may be ended.
_END = "SELECT a.pid, pg_terminate_backend(a.pid) AS ended FROM pg_stat_activity a WHERE " + _BEFORE
_END_IDLE = text(_END + " AND a.state = 'idle'")
_END_BUSY = text(_END + " AND a.state IS DISTINCT FROM 'idle'")
_END_READERS = text(_END + f" AND a.state IS DISTINCT FROM 'idle' AND NOT {_WRITING}")
_LEFT = text(
    f"SELECT a.pid, a.xact_start, {_WRITING} AS writing FROM pg_stat_activity a WHERE {_BEFORE}"
)


@dataclass(frozen=True)
class Session:
    """A session still there when :func:`end_sessions_before` gave up."""

    pid: int
    xact_start: datetime | None
    writing: bool


@dataclass(frozen=True)
class EndedSessions:
    """What :func:`end_sessions_before` did: how many sessions it ended, how many writing
    ones it saw (waited for, or ended after the grace), and the sessions still there when it
    gave up (none when it is done)."""

    ended: int
    writers: int
    left: tuple[Session, ...] = ()


def end_sessions_before(
    conn: Connection,
    since: Any,
    *,
    grace_until: float,
    give_up_at: float,
    wait_for_writers: bool,
    poll_s: float,
) -> EndedSessions:
    """End the client sessions of ``conn``'s database opened before ``since`` (a timestamp of
    the server's, e.g. ``clock_timestamp()`` taken once the database was made read-only).

    Idle sessions are ended at once, in every round. A session busy in a statement or a
    transaction is given until ``grace_until`` (a :func:`time.monotonic` instant) to finish,
    then ended; but with ``wait_for_writers`` one whose transaction wrote is never ended, only
    waited for. Rounds go on every ``poll_s`` seconds until no such session is left or a round
    begins at or after ``give_up_at`` (monotonic; not before ``grace_until``): then the
    sessions still there are returned in :attr:`EndedSessions.left` for the caller to judge
    (with ``wait_for_writers`` off they were just ended, and may not have exited yet).
    ``conn`` must be in AUTOCOMMIT (each round must see the sessions as they are now).
    """
    if give_up_at < grace_until:
        raise ValueError("give_up_at is before grace_until: busy sessions would never be ended")
    params = {"since": since}
    end_after_grace = _END_READERS if wait_for_writers else _END_BUSY
    # Sets of pids: a session ended in one round may still be listed, exiting, in the next.
    ended, writers = set[int](), set[int]()
    while True:
        # One instant a round: a round that gives up has also ended what the grace allows.
        now = time.monotonic()
        ended |= {r.pid for r in conn.execute(_END_IDLE, params) if r.ended}
        if now >= grace_until:
            ended |= {r.pid for r in conn.execute(end_after_grace, params) if r.ended}
        left = [Session(r.pid, r.xact_start, bool(r.writing)) for r in conn.execute(_LEFT, params)]
        writers |= {s.pid for s in left if s.writing}
        if not left:
            return EndedSessions(len(ended), len(writers))
        if now >= give_up_at:
            return EndedSessions(len(ended), len(writers), tuple(left))
        time.sleep(poll_s)
