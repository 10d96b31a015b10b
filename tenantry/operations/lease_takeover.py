"""Taking over an operation whose holder was killed: its lease ended at once when the process
holding it ran on this host and is gone, instead of waiting for the lease to lapse."""

from __future__ import annotations

import os
import socket
import uuid

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from tenantry.db.master.models import Operation
from tenantry.db.types import utcnow
from tenantry.operations.kit import holder_process


def release_if_holder_died(
    sessions: sessionmaker[Session], engine: Engine, op_id: uuid.UUID
) -> bool:
    """End the lease of operation ``op_id`` (an import, or the provisioning of its store) at
    once when the process holding it ran on this host and is gone (killed), so a rerun takes
    it over now instead of when its lease lapses."""
    with sessions() as session:
        holder = session.scalar(select(Operation.lease_holder).where(Operation.id == op_id))
    if not holder or not _dead_here(holder):
        return False
    with engine.begin() as conn:
        released = conn.execute(
            update(Operation)
            .where(Operation.id == op_id, Operation.lease_holder == holder)
            .values(lease_expires_at=utcnow())
        ).rowcount
    return bool(released)


def _dead_here(holder: str) -> bool:
    """Whether lease ``holder`` (named by :func:`holder_id`, with or without a runner's
    prefix) is a process of this host that no longer runs."""
    process = holder_process(holder)
    if process is None:
        return False
    host, pid = process
    if host != socket.gethostname() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
