"""Write blocks: a store whose database is being moved or restored refuses writes for a while.

The block lives on the store row in master (``write_block_reason``, ``write_block_until``), so
every API process sees it on its next request. It always carries an end: a mover that dies
stops renewing it and the block lapses on its own instead of refusing writes forever.
"""

from __future__ import annotations

import math
from datetime import datetime

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
