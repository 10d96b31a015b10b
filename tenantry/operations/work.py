"""What is done with each piece of durable work a dispatcher hands over.

A queue worker (``tenantry.jobs``) and the in-process dispatcher (``--inline``, the API's
immediate mode) both call these, so a job run either way takes the same steps and leaves the
same record of its progress in master.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import timedelta

from tenantry.backup.storage import storage_for
from tenantry.db.master.models import OperationKind
from tenantry.errors import Conflict
from tenantry.observability import doctor
from tenantry.observability.checks import diagnose
from tenantry.operations import (
    audit_prune,
    backup_schedule,
    backup_take,
    backup_verify,
    credential_rotation,
    fleet_queue,
    move_source_drop,
    spare_pool,
    usage_rollup,
)
from tenantry.operations.backup_take import take_backup
from tenantry.operations.kit import OperationKit, holder_id
from tenantry.operations.premigration import PreMigrationBackups
from tenantry.operations.provision import Provisioner
from tenantry.runtime import Platform
from tenantry.services import audit, provisioning_records
from tenantry.services.backups.targets import resolve
from tenantry.services.import_jobs import queued_imports

log = logging.getLogger("tenantry.jobs")
#: Batches of old audit and usage rows each table loses per scheduler tick (a minute).
RETENTION_BATCHES_PER_TICK = 5


def worker_name(prefix: str = "") -> str:
    """A name for one runner of jobs, unique across machines and processes."""
    return holder_id(prefix)


def provisioner(platform: Platform, worker: str) -> Provisioner:
    """A provisioner that runs (or cleans up after) jobs as ``worker``."""
    return Provisioner(
        platform.sessions, platform.box, platform.settings, platform.tenant_spec, worker
    )


def run_provision(platform: Platform, job_id: uuid.UUID, *, worker: str | None = None) -> str:
    """Run (or resume) provisioning job ``job_id``; its outcome (completed, failed, …)."""
    outcome = provisioner(platform, worker or worker_name()).run(job_id)
    log.info("provisioning job %s: %s", job_id, outcome)
    return outcome


def run_fleet_tenant(platform: Platform, run_id: uuid.UUID, store_id: uuid.UUID) -> str:
    """Migrate one tenant database of queued fleet run ``run_id``; the tenant's outcome."""
    settings = platform.settings
    outcome = fleet_queue.run_queued_tenant(
        platform.sessions,
        platform.box,
        platform.tenant_spec,
        run_id,
        store_id,
        owner=settings.tenant_owner,
        lock_ttl=timedelta(seconds=settings.job_lease_seconds),
        pre_migration=PreMigrationBackups(
            platform.sessions, storage_for(settings), settings, platform.box, actor=audit.WORKER
        ).for_tenants_of(platform.tenant_spec),
    )
    status = outcome.status.value if outcome else "skipped (run over)"
    log.info("fleet run %s, store %s: %s", run_id, store_id, status)
    return status


def recover_fleet_run(platform: Platform, run_id: uuid.UUID) -> list[uuid.UUID]:
    """Recover stalled fleet run ``run_id`` (its process or its workers stopped): the tenants
    to enqueue again for a queued run; a run whose own process died is marked abandoned."""
    lease = timedelta(seconds=platform.settings.job_lease_seconds)
    store_ids = fleet_queue.recover_run(platform.sessions, run_id, lease)
    log.info("fleet run %s stalled: %d tenant(s) enqueued again", run_id, len(store_ids))
    return store_ids


def run_import(platform: Platform, operation_id: uuid.UUID) -> str:
    """Run (or resume) queued store import ``operation_id``; how it ended."""
    # Imported here: an import provisions its stores through the in-process dispatcher,
    # whose module imports this one.
    from tenantry.operations import import_queued

    status = import_queued.run_queued_import(platform, operation_id)
    log.info("store import %s: %s", operation_id, status)
    return status


def stalled_queued_imports(
    platform: Platform, kit: OperationKit, *, queued_for: timedelta
) -> list[uuid.UUID]:
    """The queued store imports no live worker runs (its worker died, or its message was
    lost: queued longer than ``queued_for``), to enqueue again."""
    stalled = kit.find_stalled(kinds=(OperationKind.IMPORT,), queued_for=queued_for)
    with platform.sessions() as session:
        handed = queued_imports(session, (s.id for s in stalled))
    return [s.id for s in stalled if s.id in handed]


def run_drain(platform: Platform, operation_id: uuid.UUID, concurrency: int | None = None) -> str:
    """Run (or resume) server drain ``operation_id``, ``concurrency`` stores at once (None:
    as it was asked); how it ended (a drain another live process runs is skipped)."""
    # Imported here: the drain's moves import the move machinery, which this module's other
    # work does not need.
    from tenantry.operations.server_drain import ServerDrain

    try:
        report = ServerDrain(platform, audit.WORKER).run(operation_id, concurrency=concurrency)
    except Conflict as exc:
        log.info("drain %s: skipped (%s)", operation_id, exc.message)
        return "skipped"
    log.info("drain %s of server %s: %s", operation_id, report.server, report.status)
    return report.status


def run_rebalance(
    platform: Platform, operation_id: uuid.UUID, concurrency: int | None = None
) -> str:
    """Run (or resume) rebalance ``operation_id``, ``concurrency`` stores at once (None: as
    it was asked); how it ended (a rebalance another live process runs is skipped)."""
    from tenantry.operations.server_rebalance import Rebalance  # the move machinery: lazily

    try:
        report = Rebalance(platform, audit.WORKER).run(operation_id, concurrency=concurrency)
    except Conflict as exc:
        log.info("rebalance %s: skipped (%s)", operation_id, exc.message)
        return "skipped"
    log.info("rebalance %s: %s", operation_id, report.status)
    return report.status


def run_backup(platform: Platform, backup_id: uuid.UUID, scope: str) -> str:
    """Take queued backup ``backup_id`` of ``scope``; its status, or ``skipped`` when another
    runner took it already (a duplicate delivery)."""
    with platform.sessions() as session:
        target = resolve(session, platform.box, platform.settings, scope)
    try:
        backup = take_backup(
            platform.sessions,
            storage_for(platform.settings),
            target,
            level=platform.settings.backup_zstd_level,
            queued_id=backup_id,
            lease_seconds=platform.settings.job_lease_seconds,
            actor=audit.WORKER,  # replaced by the queued backup's requester
        )
    except Conflict:
        log.info("backup %s of %s: skipped, another worker took it", backup_id, scope)
        return "skipped"
    log.info("backup %s of %s: %s", backup_id, scope, backup.status)
    return str(backup.status)


def recover_backups(
    platform: Platform,
) -> tuple[list[tuple[uuid.UUID, str]], list[uuid.UUID]]:
    """The recovery sweep's part for backups: the queued takes nobody took (to enqueue again,
    with their scope), and the ids of takes and restore tests whose process died, now cleaned
    up and failed."""
    settings = platform.settings
    lease = settings.job_lease_seconds
    lost, ended = backup_take.recover_stalled(
        platform.sessions,
        storage_for(settings),
        lease_seconds=lease,
        queued_for=timedelta(seconds=lease),
    )
    tests = backup_verify.recover_stalled(platform.sessions, lease_seconds=lease)
    if ended or tests:
        log.info("failed %d stalled backup(s), %d stalled restore test(s)", len(ended), len(tests))
    return lost, ended + tests


def backup_tick(platform: Platform) -> None:
    """Run the backups, restore tests and pruning that are due now, rotate the store
    credentials older than ``TENANTRY_CREDENTIAL_ROTATION_DAYS``, measure the stores' usage
    that is due, then apply the audit and usage logs' retention (a few bounded batches a
    tick; the next tick goes on)."""
    backup_schedule.tick(
        platform.sessions,
        storage_for(platform.settings),
        platform.settings,
        platform.box,
        on_event=log.info,
    )
    credential_tick(platform)
    usage_tick(platform)
    retention_tick(platform)
    move_source_tick(platform)


def move_source_tick(platform: Platform) -> list[move_source_drop.SourceDrop]:
    """Drop a bounded batch of the sources completed moves kept past
    ``TENANTRY_MOVE_KEEP_SOURCE_DAYS`` (one scheduler at a time); what became of each."""
    kit = OperationKit.from_settings(platform.sessions, platform.settings)
    return move_source_drop.drop_due_sources(platform.sessions, platform.box, kit)


def spare_tick_after_job(platform: Platform) -> spare_pool.RefillReport | None:
    """After a provisioning job: refill the spare pools (see :func:`spare_tick`) unless more
    provisioning jobs are queued. In a burst the spares cannot keep up, and each one made
    then is only taken by the next job, at the cost of its own steps (a login, grants, two
    master writes) on top of the clone; the jobs clone their own databases instead, and the
    job that ends the backlog (or the minute's tick) refills. None when it did not."""
    with platform.sessions() as session:
        if provisioning_records.any_queued(session):
            return None
    return spare_tick(platform)


def spare_tick(platform: Platform) -> spare_pool.RefillReport:
    """Refill the spare database pools (and retire stale spares), unless another process is
    refilling; what was made and dropped."""
    report = spare_pool.refill(
        platform.sessions, platform.box, platform.settings, platform.tenant_spec
    )
    if report.made or report.dropped:
        log.info("spare databases: made %s, dropped %s", report.made, report.dropped)
    return report


def credential_tick(platform: Platform) -> list[str]:
    """Rotate every store's runtime login older than the policy (one scheduler at a time);
    the slugs rotated."""
    kit = OperationKit.from_settings(platform.sessions, platform.settings)
    with kit.lock_if_free(CREDENTIAL_LOCK) as mine:
        if not mine:
            return []  # another worker's scheduler is rotating
        outcomes = credential_rotation.rotate_due(platform)
    for outcome in outcomes:
        if outcome.error is None:
            log.info("rotated the credentials of store %s (now %s)", outcome.slug, outcome.login)
        else:
            log.warning("rotating store %s's credentials failed: %s", outcome.slug, outcome.error)
    return [o.slug for o in outcomes if o.error is None]


#: The credential rotation's lock: one scheduler rotates at a time.
CREDENTIAL_LOCK = "credential-rotation"


def usage_tick(platform: Platform) -> list[usage_rollup.Rolled]:
    """Measure the stores whose usage is due (not measured for
    ``TENANTRY_USAGE_REFRESH_MINUTES``, or not since midnight UTC: yesterday's row is then
    written), a bounded batch a tick, one scheduler at a time; the outcomes."""
    kit = OperationKit.from_settings(platform.sessions, platform.settings)
    with kit.lock_if_free(usage_rollup.USAGE_LOCK) as mine:
        if not mine:
            return []  # another worker's scheduler is measuring
        outcomes = usage_rollup.rollup_due(
            platform, on_done=lambda _: kit.renew_lock(usage_rollup.USAGE_LOCK)
        )
    measured = [o for o in outcomes if o.error is None]
    if measured:
        log.info("usage: measured %d store(s)", len(measured))
    return outcomes


def retention_tick(platform: Platform) -> audit_prune.PruneReport:
    """Delete a bounded share of what the audit and usage retention no longer keeps."""
    report = audit_prune.prune(
        platform.sessions,
        platform.billing_writer_sessions,
        platform.settings,
        actor=audit.SCHEDULER,
        max_batches=RETENTION_BATCHES_PER_TICK,
    )
    if report.total:
        log.info("retention: deleted %d old audit and usage row(s)", report.total)
    return report


def doctor_tick(
    platform: Platform, *, queue_depth: Callable[[], int] | None = None
) -> list[doctor.Check]:
    """Run ``tenantry doctor``'s checks on the worker's platform and log each one that is not
    ok on ``tenantry.doctor`` (warning at WARNING, critical at ERROR, with the operation it
    names); an all-ok run logs nothing above INFO. The results, for callers that want them."""
    context = doctor.DoctorContext.borrow(
        platform.settings,
        platform.master_engine,
        platform.billing_engine,
        platform.box,
        queue_depth=queue_depth,
    )
    results = diagnose(context)
    doctor.log_results(results)
    return results
