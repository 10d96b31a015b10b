"""A queued fleet run: one job per tenant, run by queue workers on any machine.

The run is one operation whose lease and fleet lock are held by a holder name every worker
shares (``fleet-queue:<run id>``): each tenant job renews both as it starts (and while its
migration runs), records its outcome, and the job that completes the count closes the run and
releases the lock. A cancel request is seen by each job as it starts: the tenants not started
are recorded as skipped. If the workers stop, the lease lapses and the recovery sweep
(:func:`recover_run`, from ``Queue.recover``) resumes the run: the tenants without an outcome
are enqueued again (a tenant already recorded is never run twice by its jobs).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db.master.models import (
    HELD_STATUSES,
    FleetResult,
    FleetRun,
    OperationStatus,
    Store,
    TenantOutcome,
)
from tenantry.db.schemas import SchemaSpec
from tenantry.errors import Conflict, NotFound
from tenantry.operations import audited
from tenantry.operations.fleet_record import write_outcomes
from tenantry.operations.fleet_run import RUN_AGAIN, abandon, end_run, lock_name, open_run
from tenantry.operations.kit import LostClaim, OperationKit
from tenantry.services.fleet_migrate import MigrateOptions, Outcome, migrate_tenant, skipped
from tenantry.services.fleet_targets import TenantDb, tenant_databases


def queue_kit(sessions: sessionmaker[Session], run_id: uuid.UUID, lease: timedelta) -> OperationKit:
    """The kit every worker uses for queued run ``run_id``: one holder name for all."""
    return OperationKit(sessions, lease_seconds=lease.total_seconds(), holder=f"queue:{run_id}")


def start_queued_run(
    sessions: sessionmaker[Session],
    box: SecretBox,
    spec: SchemaSpec,
    options: MigrateOptions,
    *,
    slugs: list[str] | None = None,
    lock_ttl: timedelta = timedelta(seconds=60),
    actor: str,
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """Open a run whose tenants are migrated by queue workers: its id and the store ids to
    enqueue, one job each. Audited (``fleet.migrate``, queued) when opened: the workers
    record each tenant's outcome in the run, which ``fleet status`` shows."""
    run_id = uuid.uuid4()
    kit = queue_kit(sessions, run_id, lock_ttl)
    with audited.attempt(
        sessions,
        actor=actor,
        action="fleet.migrate",
        target_type="fleet_run",
        target_id=str(run_id),
        details={"role": spec.role.value, "goal": options.goal, "stores": slugs, "queued": True},
    ) as entry:
        tenants, _ = open_run(kit, box, spec, options, slugs, run_id, concurrency=0, queued=True)
        entry.details["tenants"] = len(tenants)
    if not tenants:
        finish_if_done(kit, run_id, spec.role.value)
    return run_id, [t.store_id for t in tenants]


def run_queued_tenant(
    sessions: sessionmaker[Session],
    box: SecretBox,
    spec: SchemaSpec,
    run_id: uuid.UUID,
    store_id: uuid.UUID,
    *,
    owner: str,
    lock_ttl: timedelta = timedelta(seconds=60),
    pre_migration: Callable[[str | None], Callable[[TenantDb, str | None], None]] | None = None,
) -> Outcome | None:
    """One queued tenant of run ``run_id``; None when the run is over (finished, or
    abandoned after its lease lapsed) or the tenant already has its outcome, and the job has
    nothing to do.

    ``pre_migration(goal)`` gives the pre-migration backup hook, used when the run asked
    for backups first."""
    role = spec.role.value
    kit = queue_kit(sessions, run_id, lock_ttl)
    lock = lock_name(role)
    if not kit.renew(run_id) or not kit.renew_lock(lock):
        return None  # the run is over or another run took over
    # One job per tenant at a time: the same tenant may be delivered twice (a retry, or the
    # recovery sweep enqueueing again a job that was only late). Two master writes per
    # queued tenant, which a run in one process does not pay.
    in_hand = f"{lock}:{run_id}:{store_id}"
    try:
        kit.acquire_lock(in_hand, operation_id=run_id)
    except Conflict:
        return None  # another worker has this tenant in hand
    try:
        outcome = _migrate_queued(
            sessions, kit, box, spec, run_id, store_id, owner, pre_migration, in_hand
        )
        if outcome is not None:
            with kit.engine.begin() as conn:
                write_outcomes(conn, run_id, [outcome])
    finally:
        kit.release_lock(in_hand)
    if outcome is not None:
        finish_if_done(kit, run_id, role)
    return outcome


def _migrate_queued(
    sessions: sessionmaker[Session],
    kit: OperationKit,
    box: SecretBox,
    spec: SchemaSpec,
    run_id: uuid.UUID,
    store_id: uuid.UUID,
    owner: str,
    pre_migration: Callable[[str | None], Callable[[TenantDb, str | None], None]] | None,
    in_hand: str,
) -> Outcome | None:
    """The outcome of one queued tenant whose job holds ``in_hand``; None when it has one."""
    with sessions() as session:
        run = session.get(FleetRun, run_id)
        if run is None or run.operation_status not in HELD_STATUSES:
            return None
        recorded = session.scalar(
            select(FleetResult.id)
            .where(FleetResult.run_id == run_id, FleetResult.store_id == store_id)
            .limit(1)
        )
        if recorded is not None:
            return None  # a second delivery of this tenant's job
        cancelling = run.operation_status == OperationStatus.CANCELLING
        options = MigrateOptions(
            goal=run.goal,
            acting_app=str(run.options.get("acting_app") or owner),
            owner=owner,
            allow_destructive=bool(run.options.get("allow_destructive")),
            before_ddl=(
                pre_migration(run.goal)
                if pre_migration is not None and run.options.get("backup_first")
                else None
            ),
        )
        slug = session.scalar(select(Store.slug).where(Store.id == store_id)) or str(store_id)
        try:
            tenants = [] if cancelling else tenant_databases(session, box, [slug])
        except NotFound:
            tenants = []
    if cancelling:
        return skipped(store_id, slug)
    if not tenants:
        return Outcome(
            store_id,
            slug,
            None,
            None,
            TenantOutcome.FAILED,
            0,
            "the store is no longer active; it was not migrated.",
        )
    with kit.kept_alive(run_id, lock_keys=(lock_name(spec.role.value), in_hand)):
        return migrate_tenant(tenants[0], spec, options)


def finish_if_done(kit: OperationKit, run_id: uuid.UUID, role: str) -> bool:
    """Close the run once every tenant has an outcome (exactly one caller wins: the others
    find it no longer held) and release the fleet lock."""
    with kit.sessions() as session:
        run = session.get(FleetRun, run_id)
        if run is None or run.operation_status not in HELD_STATUSES:
            return False
        total = run.total or 0
        if run.done < total:
            return False
        counts = {
            "migrated": run.migrated,
            "current": run.current,
            "failed": run.failed,
            "skipped": run.skipped,
        }
    try:
        end_run(kit, run_id, total=total, counts=counts)
    except LostClaim:
        return False
    kit.release_lock(lock_name(role))
    return True


def recover_run(
    sessions: sessionmaker[Session], run_id: uuid.UUID, lease: timedelta
) -> list[uuid.UUID]:
    """A stalled fleet run (no live process renews its lease): the store ids to enqueue.

    A run a command ran in its own process (not queued) cannot be resumed without it: it is
    marked abandoned with what to do. A queued run is claimed again and its tenants without
    an outcome are returned (none, and the run closed, if it was asked to stop)."""
    with sessions() as session:
        run = session.get(FleetRun, run_id)
        if run is None or run.operation_status not in HELD_STATUSES:
            return []
        role, options, done, total = run.role, dict(run.options), run.done, run.total or 0
    ids = options.get("store_ids")
    kit = queue_kit(sessions, run_id, lease)
    if not options.get("queued") or not isinstance(ids, list):
        abandon(
            kit.engine,
            run_id,
            f"its process stopped after {done} of {total} tenants; {RUN_AGAIN}",
        )
        return []
    claim = kit.claim(run_id)
    if claim is None:
        return []  # another worker resumed it, or it ended meanwhile
    lock = lock_name(role)
    if not kit.renew_lock(lock):
        try:
            kit.acquire_lock(lock, operation_id=run_id)
        except Conflict:
            abandon(
                kit.engine,
                run_id,
                f"another fleet run took its lock; {RUN_AGAIN}",
                holder=kit.holder,
            )
            return []
    with sessions() as session:
        recorded = set(
            session.scalars(select(FleetResult.store_id).where(FleetResult.run_id == run_id))
        )
    missing = [uuid.UUID(str(i)) for i in ids if uuid.UUID(str(i)) not in recorded]
    if claim.cancel_requested and missing:
        with sessions() as session:
            slugs = dict(
                session.execute(select(Store.id, Store.slug).where(Store.id.in_(missing))).tuples()
            )
        untouched = [skipped(s, slugs.get(s, str(s))) for s in missing]
        with kit.engine.begin() as conn:
            write_outcomes(conn, run_id, untouched)
        missing = []
    if not missing:
        finish_if_done(kit, run_id, role)
    return missing
