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
    """Whether lease ``holder`` (``host:pid:random``, as the kit names holders) is a process
    of this host that no longer runs."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
