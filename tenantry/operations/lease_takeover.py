"""Taking over work whose holder was killed: an operation's lease (or a lock) ended at once when
the process holding it ran on this host and is gone, instead of waiting for it to lapse.

A holder's name says its host and pid (:func:`~tenantry.operations.kit.holder_id`), so a
process on the same host can tell a dead holder from a live one with ``kill(pid, 0)``. A holder
on another host, or a pid that is running (even if it was reused by another program), is left
to its lease: the check only ever ends claims early, never keeps one longer."""

from __future__ import annotations

import os
import uuid

from sqlalchemy import Engine, not_, select, update
from sqlalchemy.orm import Session, sessionmaker

from tenantry.db.master.models import HELD_STATUSES, Operation, OperationLock
from tenantry.db.types import utcnow
from tenantry.operations.kit import holder_process, this_host
from tenantry.services.operation_rows import lease_lapsed


def release_if_holder_died(
    sessions: sessionmaker[Session], engine: Engine, op_id: uuid.UUID
) -> bool:
    """End the lease of operation ``op_id`` (an import, or the provisioning of its store) at
    once when the process holding it ran on this host and is gone (killed), so a rerun takes
    it over now instead of when its lease lapses."""
    with sessions() as session:
        holder = session.scalar(select(Operation.lease_holder).where(Operation.id == op_id))
    if not holder or not holder_gone(holder):
        return False
    with engine.begin() as conn:
        released = conn.execute(
            update(Operation)
            .where(Operation.id == op_id, Operation.lease_holder == holder)
            .values(lease_expires_at=utcnow())
        ).rowcount
    return bool(released)


def release_dead_holders_here(engine: Engine) -> int:
    """End the leases of operations, and the locks, held by processes of this host that are
    gone (killed, or stopped in the middle of a job), so that the recovery sweep run next
    resumes, rolls back or ends their work now rather than once each lease lapses (a minute
    by default, and the sweep's minute after it). How many leases and locks it ended."""
    now = utcnow()
    held = Operation.status.in_(HELD_STATUSES) & not_(lease_lapsed(now))
    with engine.connect() as conn:
        holders = set(
            conn.scalars(select(Operation.lease_holder).where(held).distinct()).all()
        ) | set(
            conn.scalars(
                select(OperationLock.holder).where(OperationLock.expires_at >= now).distinct()
            ).all()
        )
    dead = sorted(h for h in holders if h and holder_gone(h))
    if not dead:
        return 0
    with engine.begin() as conn:
        # Only what those holders still hold: a claim that lapsed or changed hands since the
        # read is left as it is.
        ended = conn.execute(
            update(Operation)
            .where(held, Operation.lease_holder.in_(dead))
            .values(lease_expires_at=now)
        ).rowcount
        ended += conn.execute(
            update(OperationLock)
            .where(OperationLock.holder.in_(dead), OperationLock.expires_at >= now)
            .values(expires_at=now)
        ).rowcount
    return int(ended)


def holder_gone(holder: str) -> bool:
    """Whether claim ``holder`` (named by :func:`~tenantry.operations.kit.holder_id`, with or
    without a runner's prefix) is a process of this host that no longer runs. False whenever
    that cannot be told: another host's process, or a name of another shape."""
    process = holder_process(holder)
    if process is None:
        return False
    host, pid = process
    if host != this_host() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
