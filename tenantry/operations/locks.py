"""Exclusive locks in master: at most one holder per key (a fleet run per role, the backup
scheduler), as a lease the holder renews, so a dead holder's lock lapses instead of blocking.

One row per held key in ``operation_locks``. Taking a lock inserts the row; a row already there
is taken over only once its lease lapsed, by a conditional update the database decides, so two
processes never both hold a key. Every attempt is its own short transaction on master: nothing
here commits (or waits on) a caller's session.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from tenantry.db.master.models import OperationLock
from tenantry.db.types import utcnow
from tenantry.errors import Conflict

#: How long to sleep between attempts while waiting for a held lock.
POLL_S = 0.1
#: Attempts that found the lock changing hands under them (released, taken over, a deadlock
#: victim) before giving up: each is a real race, so a handful is plenty.
MAX_RACES = 20


@dataclass(frozen=True)
class LockGrant:
    """A lock now held."""

    key: str
    #: The operation that held it before, when its holder's lease had lapsed (it died).
    took_over_from: uuid.UUID | None
    #: Whether a lapsed holder's lock was taken over (its operation id may be None).
    took_over: bool


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as read."""

    operation_id: uuid.UUID | None
    holder: str
    expires_at: datetime


def is_deadlock(exc: DBAPIError) -> bool:
    """A deadlock or serialization victim: the statement can simply be tried again."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if code in ("40P01", "40001"):
        return True
    args: tuple[Any, ...] = getattr(exc.orig, "args", ())
    return bool(args) and args[0] in (1213, 1205)  # MySQL: deadlock, lock wait timeout


class ExclusiveLocks:
    """Locks taken on master's ``engine`` as ``holder`` for ``ttl`` at a time."""

    def __init__(self, engine: Engine, holder: str, ttl: timedelta) -> None:
        self.engine = engine
        self.holder = holder
        self.ttl = ttl

    def acquire(
        self, key: str, *, operation_id: uuid.UUID | None = None, wait_s: float = 0.0
    ) -> LockGrant:
        """Hold ``key`` for ``operation_id``, waiting up to ``wait_s`` seconds for a live
        holder to let go; then :class:`Conflict` naming who holds it and until when."""
        deadline = time.monotonic() + wait_s
        races = 0
        while True:
            try:
                outcome = self._try(key, operation_id)
            except DBAPIError as exc:
                if not is_deadlock(exc):
                    raise
                outcome = None
            if isinstance(outcome, LockGrant):
                return outcome
            if outcome is None:  # it changed hands under us: look again at once
                races += 1
                if races > MAX_RACES:
                    raise Conflict(
                        f"the lock {key!r} kept changing hands; it could not be taken.",
                        "Try again in a moment.",
                    )
                continue
            if time.monotonic() >= deadline:
                of = f" (operation {outcome.operation_id})" if outcome.operation_id else ""
                raise Conflict(
                    f"{key} is held by {outcome.holder}{of} until "
                    f"{outcome.expires_at:%H:%M:%S} UTC.",
                    "Wait for it to finish. A holder that died lets go when its lease lapses.",
                )
            time.sleep(POLL_S)

    def _try(self, key: str, operation_id: uuid.UUID | None) -> LockGrant | Holder | None:
        """One attempt: the grant, the live holder in the way, or None (a race: retry)."""
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(OperationLock).values(
                        name=key,
                        operation_id=operation_id,
                        holder=self.holder,
                        expires_at=now + self.ttl,
                    )
                )
            return LockGrant(key, None, took_over=False)
        except IntegrityError:
            pass  # someone holds it, or held it and died: look at the row
        with self.engine.begin() as conn:
            row = conn.execute(
                select(
                    OperationLock.operation_id, OperationLock.holder, OperationLock.expires_at
                ).where(OperationLock.name == key)
            ).first()
            if row is None:
                return None  # released in between
            if row.expires_at > now:
                return Holder(row.operation_id, row.holder, row.expires_at)
            # The database re-checks the lapse as it updates: of two takers, one wins.
            taken = conn.execute(
                update(OperationLock)
                .where(OperationLock.name == key, OperationLock.expires_at < now)
                .values(operation_id=operation_id, holder=self.holder, expires_at=now + self.ttl)
            ).rowcount
        return LockGrant(key, row.operation_id, took_over=True) if taken == 1 else None

    def renew(self, key: str) -> bool:
        """Extend the lease of ``key``; False when it is no longer this holder's."""
        with self.engine.begin() as conn:
            renewed = conn.execute(
                update(OperationLock)
                .where(OperationLock.name == key, OperationLock.holder == self.holder)
                .values(expires_at=utcnow() + self.ttl)
            ).rowcount
        return renewed == 1

    def release(self, key: str) -> None:
        """Let ``key`` go, if this holder still has it."""
        with self.engine.begin() as conn:
            conn.execute(
                delete(OperationLock).where(
                    OperationLock.name == key, OperationLock.holder == self.holder
                )
            )
