"""Ending the operations whose process died and that are not resumed from where they stopped:
moves, restores and row recoveries.

Each is rolled back (or ended) by the module that runs it, once its lease lapsed: a move's
store stays on its source, writable, its target dropped (:mod:`.move_store`); a restore's
target keeps its data and its write block is lifted (:mod:`.restore`); a row recovery inserted
all its rows or none (:mod:`.recover_rows`). The workers' recovery sweep calls
:func:`end_stalled` on start and every minute.
"""

from __future__ import annotations

import logging

from tenantry.db.master.models import OperationKind
from tenantry.operations.kit import OperationKit
from tenantry.operations.move_store import StoreMover
from tenantry.operations.recover_rows import recover_stalled_rows
from tenantry.operations.restore import recover_stalled_restore
from tenantry.runtime import Platform

log = logging.getLogger("tenantry.jobs")

#: The kinds this sweep ends.
KINDS = (OperationKind.MOVE, OperationKind.RESTORE, OperationKind.RECOVER_ROWS)


def end_stalled(platform: Platform, *, actor: str = "worker") -> int:
    """Roll back or end every stalled move, restore and row recovery; how many were ended."""
    kit = OperationKit.from_settings(platform.sessions, platform.settings)
    ended = 0
    for stalled in kit.find_stalled(kinds=KINDS):
        try:
            if stalled.kind == OperationKind.MOVE:
                mover = StoreMover(
                    platform.sessions,
                    platform.box,
                    platform.settings,
                    platform.tenant_spec,
                    actor=actor,
                )
                status = mover.recover_stalled(stalled.id)
            elif stalled.kind == OperationKind.RESTORE:
                status = recover_stalled_restore(
                    platform.sessions, platform.box, platform.settings, stalled.id
                )
            else:
                status = recover_stalled_rows(platform.sessions, platform.settings, stalled.id)
        except Exception:  # one operation's cleanup never stops the others'
            log.exception("ending stalled %s operation %s failed", stalled.kind, stalled.id)
            continue
        if status is not None:
            ended += 1
            log.info("stalled %s operation %s: %s", stalled.kind, stalled.id, status)
    return ended
