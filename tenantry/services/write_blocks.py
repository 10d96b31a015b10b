"""Write blocks: a store whose database is being moved or restored refuses writes for a while.

The block lives on the store row in master (``write_block_reason``, ``write_block_until``), so
every API process sees it on its next request. It always carries an end: a mover that dies
stops renewing it and the block lapses on its own instead of refusing writes forever.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from tenantry.db.master.models import Store
from tenantry.db.types import utcnow
from tenantry.errors import WritesBlocked

#: The longest Retry-After tenantry suggests: blocks are renewed in short leases and usually
#: end well before their current lease does, so clients should look again soon.
MAX_RETRY_AFTER_S = 30


def active_block(store: Store, now: datetime | None = None) -> str | None:
    """Why writes to ``store`` are refused right now, or ``None`` when they are allowed."""
    if store.write_block_reason is None or store.write_block_until is None:
        return None
    return store.write_block_reason if store.write_block_until > (now or utcnow()) else None


def ensure_writable(store: Store, now: datetime | None = None) -> None:
    """Raise :class:`WritesBlocked` when writes to ``store`` are refused right now."""
    now = now or utcnow()
    reason = active_block(store, now)
    if reason is None or store.write_block_until is None:
        return
    remaining = (store.write_block_until - now).total_seconds()
    raise WritesBlocked(
        f"store {store.slug!r} accepts no writes for now: {reason}; reads still work.",
        "Retry after the number of seconds in the Retry-After header.",
        retry_after=max(1, min(MAX_RETRY_AFTER_S, math.ceil(remaining))),
    )


def block_writes(session: Session, store_id: uuid.UUID, reason: str, until: datetime) -> None:
    """Refuse writes to the store for ``reason`` until ``until`` (in the caller's transaction;
    the operation holding the block renews it with its lease)."""
    store = session.get_one(Store, store_id)
    store.write_block_reason = reason
    store.write_block_until = until


def renew_block(session: Session, store_id: uuid.UUID, reason: str, until: datetime) -> bool:
    """Extend the block ``reason`` to ``until``; False when the store no longer carries it."""
    renewed = (
        session.connection()
        .execute(
            update(Store)
            .where(Store.id == store_id, Store.write_block_reason == reason)
            .values(write_block_until=until)
        )
        .rowcount
    )
    return renewed == 1


def lift_block(
    session: Session, store_id: uuid.UUID, reason: str, *, bump_connection: bool = False
) -> bool:
    """Lift the block ``reason`` if the store still carries it (another operation's block is
    left alone); with ``bump_connection``, every router reopens its engine on the store's
    database (cached connections lead to a replaced one). Whether it was lifted."""
    store = session.get(Store, store_id)
    if store is None or store.write_block_reason != reason:
        return False
    store.write_block_reason = None
    store.write_block_until = None
    if bump_connection:
        store.connection_version += 1
    return True
