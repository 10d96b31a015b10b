"""The recovery sweep's part for operations no worker can resume.

Some kinds run in the process that asked for them (a command): when that process dies, its
operation stays held by a lease nobody renews. The sweep (run by every worker at start and
every minute, :meth:`tenantry.jobs.queue.Queue.recover`) takes each such stalled operation over
and ends it as failed, saying what to run again; the work itself is safe to run again because
each of these kinds skips what it already did. Kinds a worker resumes (provisioning) are
re-dispatched by the queue instead.

A scratch database a restore test, a restore or a row recovery left when its process died is
dropped once no live operation uses its backup (:func:`drop_abandoned_scratch`; which ones:
:mod:`tenantry.services.backups.scratch_sweep`).

A move, a restore and a row recovery whose process died are rolled back, not only failed, by
the module that runs each (:func:`roll_back_abandoned`): a move's store stays on its source,
writable, its target dropped (:mod:`.move_store`); a restore's target keeps its data, its
write block is lifted and its staging copy dropped (:mod:`.restore`); a row recovery inserted
all its rows or none (:mod:`.recover_rows`).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from tenantry.db.admin import drop_database
from tenantry.db.master.models import OperationKind
from tenantry.errors import TenantryError
from tenantry.operations.kit import LostClaim, OperationKit
from tenantry.operations.move_store import StoreMover
from tenantry.operations.recover_rows import recover_stalled_rows
from tenantry.operations.restore import recover_stalled_restore
from tenantry.runtime import Platform
from tenantry.services.backups import scratch_sweep
from tenantry.services.import_jobs import queued_imports

log = logging.getLogger("tenantry.jobs")

#: For each kind run by a command: what to do once its process died (``{target}``: its target).
RERUN: dict[str, str] = {
    OperationKind.STORE_DELETE: (
        "Run `tenantry stores delete {target}` again (with the same options): databases "
        "already dropped are skipped, and the store is removed once none is left."
    ),
    OperationKind.MIGRATE: (
        "Check it with `tenantry db status`, then run `tenantry db migrate` again: its "
        "migration lock went with its process. PostgreSQL and SQLite rolled the cut-off "
        "revision back; on MySQL/MariaDB a revision cut off half-way needs `tenantry db "
        "resolve` first."
    ),
    OperationKind.STORE_CREDENTIALS: (
        "Run `tenantry stores rotate-credentials {target}` again: the store still uses the "
        "login it used before (a new password set on the other one is never used), or, if "
        "the switch was committed, the new one; either way the next rotation is safe."
    ),
    OperationKind.IMPORT: (
        "Run `tenantry import shared` again with the same source and mapping: store {target} "
        "resumes after the last batch its database received, nothing is copied twice."
    ),
    OperationKind.KEY_ROTATE: (
        "Run `tenantry keys rotate` again: every key was kept, so every secret still opens, "
        "and the new run reseals them all under its new key."
    ),
    OperationKind.IMPORT_BILLING: (
        "Run `tenantry import billing` again with the same options ({target}): rows already "
        "imported are skipped, so each row is written once."
    ),
}


def end_abandoned(kit: OperationKit) -> list[uuid.UUID]:
    """End every stalled operation of a kind no worker resumes; the ids of those ended."""
    ended: list[uuid.UUID] = []
    found = kit.find_stalled(kinds=tuple(OperationKind(k) for k in RERUN))
    with kit.sessions() as session:  # a queued store import is the workers' to resume
        handed = queued_imports(session, (s.id for s in found if s.kind == OperationKind.IMPORT))
    for stalled in found:
        if stalled.id in handed:
            continue
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


#: The kinds whose dead process's work is rolled back by the module that runs them.
ROLLED_BACK = (OperationKind.MOVE, OperationKind.RESTORE, OperationKind.RECOVER_ROWS)


def roll_back_abandoned(platform: Platform, *, actor: str = "worker") -> list[uuid.UUID]:
    """Roll back (or end) every stalled move, restore and row recovery; the ids of those
    ended."""
    kit = OperationKit.from_settings(platform.sessions, platform.settings)
    ended: list[uuid.UUID] = []
    for stalled in kit.find_stalled(kinds=ROLLED_BACK):
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
            log.exception("rolling back stalled %s operation %s failed", stalled.kind, stalled.id)
            continue
        if status is not None:
            ended.append(stalled.id)
            log.warning("%s operation %s: its process died; %s", stalled.kind, stalled.id, status)
    return ended


#: The lock one sweep holds while it looks for abandoned scratch databases (one at a time:
#: every worker sweeps each minute, and each would list every server).
SCRATCH_LOCK = "scratch-sweep"


def drop_abandoned_scratch(platform: Platform) -> list[scratch_sweep.Scratch]:
    """Drop the scratch databases whose process died, on every server this installation
    knows (unless another sweep is at it); those dropped. A server that cannot be listed or
    a drop refused is logged and skipped: the next sweep tries again."""
    kit = OperationKit.from_settings(platform.sessions, platform.settings)
    lease = timedelta(seconds=platform.settings.job_lease_seconds)
    dropped: list[scratch_sweep.Scratch] = []
    with kit.lock_if_free(SCRATCH_LOCK) as mine:
        if not mine:
            return dropped
        try:
            with platform.sessions() as session:
                if not scratch_sweep.any_scratch_used(session):
                    return dropped
                servers = scratch_sweep.scratch_servers(session, platform.box, platform.settings)
        except TenantryError as exc:  # a login that no longer opens: the rest of the sweep goes on
            log.warning("finding the servers of scratch databases failed: %s", exc.message)
            return dropped
        for server in servers:
            try:
                found = scratch_sweep.find_scratch(server)
                with platform.sessions() as session:
                    candidates = scratch_sweep.abandoned(session, found, lease=lease)
            except (TenantryError, SQLAlchemyError) as exc:
                log.warning("listing scratch databases failed: %s", _reason(exc))
                continue
            for scratch in candidates:
                if _drop_if_abandoned(platform, scratch, lease):
                    dropped.append(scratch)
    return dropped


def _drop_if_abandoned(
    platform: Platform, scratch: scratch_sweep.Scratch, lease: timedelta
) -> bool:
    # Asked again just before the drop: a test of the same backup may have started since
    # the listing (it makes its scratch database anew).
    with platform.sessions() as session:
        if not scratch_sweep.abandoned(session, [scratch], lease=lease):
            return False
    try:
        if not drop_database(scratch.url):
            return False  # listed through another login to the server, and dropped already
    except (TenantryError, SQLAlchemyError) as exc:
        log.warning("dropping scratch database %s failed: %s", scratch.name, _reason(exc))
        return False
    log.warning(
        "dropped scratch database %s on %s: the process using it died",
        scratch.name,
        scratch.where,
    )
    return True


def _reason(exc: Exception) -> str:
    return exc.message if isinstance(exc, TenantryError) else type(exc).__name__
