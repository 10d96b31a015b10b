"""Worker heartbeats: which job workers are alive, as master last heard from them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from tenantry.db.master.models import Worker
from tenantry.db.types import utcnow

#: How often a running worker reports itself.
BEAT_EVERY = timedelta(seconds=5)
#: A worker not heard from for this long is taken for gone (three beats missed).
ALIVE_WITHIN = timedelta(seconds=15)
#: Rows of workers gone this long are removed (a worker killed by SIGKILL leaves its row).
FORGET_AFTER = timedelta(days=1)
#: What to tell someone waiting for a queued job when no worker runs.
START_A_WORKER = (
    "Start a worker with `tenantry worker` (or `tenantry up`, which runs one), or run the "
    "job in this process with --inline."
)


def beat(
    session: Session, worker_id: uuid.UUID, *, hostname: str, pid: int, started_at: datetime
) -> None:
    """Record that worker ``worker_id`` is alive now (its first beat registers it)."""
    row = session.get(Worker, worker_id)
    if row is None:
        session.add(
            Worker(
                id=worker_id,
                hostname=hostname[:255],
                pid=pid,
                started_at=started_at,
                last_seen_at=utcnow(),
            )
        )
        # Now and then, not at every beat: rows of workers that were killed.
        session.execute(delete(Worker).where(Worker.last_seen_at < utcnow() - FORGET_AFTER))
    else:
        row.last_seen_at = utcnow()


def stopped(session: Session, worker_id: uuid.UUID) -> None:
    """Forget a worker that stopped cleanly: it is not alive any more."""
    session.execute(delete(Worker).where(Worker.id == worker_id))


def alive_count(session: Session, within: timedelta = ALIVE_WITHIN) -> int:
    """How many workers reported themselves within ``within``."""
    since = utcnow() - within
    return int(session.scalar(select(func.count()).where(Worker.last_seen_at >= since)) or 0)


def alive(session: Session, within: timedelta = ALIVE_WITHIN) -> list[Worker]:
    """The workers that reported themselves within ``within``, most recently started first."""
    since = utcnow() - within
    query = select(Worker).where(Worker.last_seen_at >= since).order_by(Worker.started_at.desc())
    return list(session.scalars(query))


def last_seen(session: Session) -> datetime | None:
    """When master last heard from any worker (None: never, or all stopped cleanly)."""
    found: datetime | None = session.scalar(select(func.max(Worker.last_seen_at)))
    return found
