"""The recovery sweep's part for operations no worker can resume.

Some kinds run in the process that asked for them (a command): when that process dies, its
operation stays held by a lease nobody renews. The sweep (run by every worker at start and
every minute, :meth:`tenantry.jobs.queue.Queue.recover`) takes each such stalled operation over
and ends it as failed, saying what to run again; the work itself is safe to run again because
each of these kinds skips what it already did. Kinds a worker resumes (provisioning) are
re-dispatched by the queue instead.
"""

from __future__ import annotations

import logging
import uuid

from tenantry.db.master.models import OperationKind
from tenantry.operations.kit import LostClaim, OperationKit

log = logging.getLogger("tenantry.jobs")

#: For each kind run by a command: what to do once its process died (``{target}``: its target).
RERUN: dict[str, str] = {
    OperationKind.STORE_DELETE: (
        "Run `tenantry stores delete {target}` again (with the same options): databases "
        "already dropped are skipped, and the store is removed once none is left."
    ),
}


def end_abandoned(kit: OperationKit) -> list[uuid.UUID]:
    """End every stalled operation of a kind no worker resumes; the ids of those ended."""
    ended: list[uuid.UUID] = []
    for stalled in kit.find_stalled(kinds=tuple(OperationKind(k) for k in RERUN)):
        if kit.claim(stalled.id) is None:  # another sweep took it first
            continue
        operation = kit.get(stalled.id)
        try:
            kit.fail(
                stalled.id,
                f"the process running it died (its lease lapsed) during step {operation.step!r}.",
                message=RERUN[stalled.kind].format(target=operation.target or "…"),
            )
        except LostClaim:
            continue
        ended.append(stalled.id)
        log.warning("%s operation %s: its process died; ended as failed", stalled.kind, stalled.id)
    return ended
