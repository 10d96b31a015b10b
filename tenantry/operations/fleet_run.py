"""A fleet run: every active tenant database migrated, as one operation (kind ``fleet_run``).

The run is claimed when it is recorded: its lease (``TENANTRY_JOB_LEASE_SECONDS``) and the
lock ``fleet:<role>`` in ``operation_locks`` (one run per role at a time) are renewed while it
works; each outcome is recorded as it comes (:mod:`.fleet_record`), the tenants done of total
are its progress, and a cancel request (``tenantry ops cancel``) is seen at the next tenant
boundary: tenants in hand finish their transaction, tenants not started are left untouched and
recorded as skipped. A run whose process died lets its lease lapse; the next run takes its lock
over and marks it abandoned, or the workers' recovery sweep does (:mod:`.fleet_queue`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Generator
from contextlib import closing, suppress
from datetime import timedelta

from sqlalchemy import Engine, case, select, update
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db.master.models import (
    ABANDONED_STEP,
    HELD_STATUSES,
    FleetRun,
    FleetRunStatus,
    Operation,
    OperationKind,
    OperationLock,
    OperationStatus,
    ProgressUnit,
)
from tenantry.db.schemas import SchemaSpec
from tenantry.db.types import utcnow
from tenantry.errors import Conflict
from tenantry.failpoints import failpoint
from tenantry.operations import audited
from tenantry.operations.fleet_record import Recorder, RunReport
from tenantry.operations.kit import LostClaim, OperationKit
from tenantry.services import audit
from tenantry.services.fleet_migrate import MigrateOptions, Outcome, migrate_tenant, skipped
from tenantry.services.fleet_targets import TenantDb, tenant_databases
from tenantry.services.operation_rows import lease_lapsed

#: What to do about a run whose process died, in its error.
log = logging.getLogger("tenantry.fleet")
RUN_AGAIN = "run `tenantry fleet migrate` again: tenants already at the target are skipped"


def lock_name(role: str) -> str:
    """The lock one run of ``role`` holds at a time."""
    return f"fleet:{role}"


def take_lock(kit: OperationKit, role: str, run_id: uuid.UUID) -> uuid.UUID | None:
    """Hold the fleet lock of ``role`` for ``run_id``; the run it took over from, if its
    process had died (that run is marked abandoned). :class:`Conflict` naming the live run
    holding it otherwise (the kit's wait is a bounded loop: nothing here recurses)."""
    name = lock_name(role)
    try:
        grant = kit.acquire_lock(name, operation_id=run_id)
    except Conflict:
        with kit.engine.connect() as conn:
            held = conn.execute(
                select(
                    OperationLock.operation_id, OperationLock.holder, OperationLock.expires_at
                ).where(OperationLock.name == name)
            ).first()
        if held is None:  # let go in between: the kit's own words stand
            raise
        raise Conflict(
            f"another fleet run holds the lock: {held.operation_id} by {held.holder} until "
            f"{held.expires_at:%H:%M:%S} UTC (it migrates the {role} databases).",
            f"Wait for it to finish, follow it with `tenantry ops show {held.operation_id}` or "
            "`tenantry fleet status`, or stop it with `tenantry ops cancel`. A run whose "
            "process died lets go when its lease lapses.",
        ) from None
    if grant.took_over_from is not None:
        abandon(kit.engine, grant.took_over_from, f"its process stopped; run {run_id} took over")
    return grant.took_over_from


def abandon(engine: Engine, run_id: uuid.UUID, error: str, *, holder: str | None = None) -> bool:
    """Mark run ``run_id`` over because its process died: ``failed`` at step ``abandoned``
    (``cancelled`` if it had been asked to stop). Only while it is held by ``holder`` or, by
    default, while its lease has lapsed; whether it was."""
    now = utcnow()
    held = Operation.lease_holder == holder if holder is not None else lease_lapsed(now)
    cancelling = Operation.status == OperationStatus.CANCELLING
    with engine.begin() as conn:
        done = conn.execute(
            update(Operation)
            .where(Operation.id == run_id, Operation.status.in_(HELD_STATUSES), held)
            .values(
                status=case((cancelling, OperationStatus.CANCELLED), else_=OperationStatus.FAILED),
                step=case((cancelling, Operation.step), else_=ABANDONED_STEP),
                error=case((cancelling, Operation.error), else_=error),
                message=case(
                    (cancelling, "cancelled; its process stopped before it could say so"),
                    else_=Operation.message,
                ),
                finished_at=now,
                lease_expires_at=None,
                updated_at=now,
            )
        ).rowcount
    return done == 1


def open_run(
    kit: OperationKit,
    box: SecretBox,
    spec: SchemaSpec,
    options: MigrateOptions,
    slugs: list[str] | None,
    run_id: uuid.UUID,
    *,
    concurrency: int,
    queued: bool = False,
) -> tuple[list[TenantDb], uuid.UUID | None]:
    """Take the fleet lock and record run ``run_id``, held by ``kit``'s holder: its tenants
    and the run it took over from (if any)."""
    role = spec.role.value
    with kit.sessions() as session:
        tenants = tenant_databases(session, box, slugs)
    took_over = take_lock(kit, role, run_id)
    now = utcnow()
    try:
        with kit.sessions.begin() as session:
            session.add(
                FleetRun(
                    id=run_id,
                    kind=OperationKind.FLEET_RUN,
                    target=role,
                    operation_status=OperationStatus.RUNNING,
                    step="migrating",
                    progress_current=0,
                    progress_total=len(tenants),
                    progress_unit=ProgressUnit.TENANTS,
                    attempts=1,
                    lease_holder=kit.holder,
                    lease_expires_at=now + kit.lease,
                    started_at=now,
                    role=role,
                    goal=options.goal,
                    concurrency=concurrency,
                    migrated=0,
                    current=0,
                    failed=0,
                    skipped=0,
                    options={
                        "stores": slugs or None,
                        "allow_destructive": options.allow_destructive,
                        "backup_first": options.before_ddl is not None,
                        "acting_app": options.acting_app,
                        "queued": queued,
                        "took_over": str(took_over) if took_over else None,
                        # A queued run's tenants, for the recovery sweep to enqueue again.
                        **({"store_ids": [str(t.store_id) for t in tenants]} if queued else {}),
                    },
                )
            )
    except BaseException:
        kit.release_lock(lock_name(role))
        raise
    return tenants, took_over


def end_run(
    kit: OperationKit,
    run_id: uuid.UUID,
    *,
    total: int,
    counts: dict[str, int],
    failed_slugs: list[str] | None = None,
) -> FleetRunStatus:
    """Close the run by its outcome counts: cancelled if tenants were skipped, failed if any
    failed or was refused, succeeded otherwise. Raises :class:`LostClaim` if it is not ours."""
    done = sum(counts.values())
    failed = counts.get("failed", 0) + counts.get("refused", 0)
    summary = (
        f"{counts.get('migrated', 0)} migrated, {counts.get('current', 0)} current, "
        f"{failed} failed of {total} tenants"
    )
    if counts.get("skipped", 0):
        kit.mark_cancelled(
            run_id,
            message=f"cancelled: {summary}; {counts['skipped']} not started were left untouched",
        )
        return FleetRunStatus.CANCELLED
    if failed or done < total:
        names = f": {', '.join(failed_slugs[:20])}" if failed_slugs else ""
        kit.fail(
            run_id,
            f"{failed} of {total} tenants failed or were refused{names} "
            "(see `tenantry fleet status`)",
            message=summary,
        )
        return FleetRunStatus.FAILED
    kit.finish(run_id, message=summary)
    return FleetRunStatus.SUCCEEDED


def _migrate_all(
    tenants: list[TenantDb],
    spec: SchemaSpec,
    options: MigrateOptions,
    concurrency: int,
    stop: Callable[[], bool],
) -> Generator[Outcome]:
    """Each tenant's outcome as it comes, ``concurrency`` tenants at a time; no tenant is
    started once ``stop()`` is true (or once the caller stops iterating).

    Plain threads pulling from one list, not an executor: a future and a wait per tenant
    cost the dispatching thread more than a no-op tenant costs its worker.
    """
    todo = iter(tenants)
    taking = threading.Lock()
    done: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
    abandoned = threading.Event()

    def work() -> None:
        try:
            while not (stop() or abandoned.is_set()):
                with taking:
                    db = next(todo, None)
                if db is None:
                    return
                done.put(migrate_tenant(db, spec, options))
                failpoint("fleet.tenant_done")  # tests: the process dies between tenants
        finally:
            done.put(None)  # this worker is finished

    workers = [
        threading.Thread(target=work, name=f"tenantry-fleet-{i}", daemon=True)
        for i in range(max(1, min(concurrency, len(tenants))))
    ]
    for worker in workers:
        worker.start()
    try:
        running = len(workers)
        while running:
            outcome = done.get()
            if outcome is None:
                running -= 1
            else:
                yield outcome
    finally:
        # An interrupted run lets the tenants in hand finish (no DDL is cut off mid-way)
        # before the caller releases the fleet lock.
        abandoned.set()
        for worker in workers:
            worker.join()


def run_fleet(
    sessions: sessionmaker[Session],
    box: SecretBox,
    spec: SchemaSpec,
    options: MigrateOptions,
    *,
    concurrency: int = 4,
    slugs: list[str] | None = None,
    lock_ttl: timedelta = timedelta(seconds=60),
    on_outcome: Callable[[Outcome], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    actor: str,
) -> RunReport:
    """Migrate every active tenant database (or ``slugs``) to ``options.goal`` here.

    Holds the run's lease and the fleet lock for the whole run (renewed in the background);
    writes each outcome to master as it comes; stops starting tenants once cancelled; ends
    ``succeeded`` only when no tenant failed or was refused. The run (not each tenant) is
    audited as ``fleet.migrate`` by ``actor``.
    """
    kit = OperationKit(sessions, lease_seconds=lock_ttl.total_seconds())
    run_id = uuid.uuid4()
    role = spec.role.value
    with audited.failures(
        sessions,
        actor=actor,
        action="fleet.migrate",
        target_type="fleet_run",
        target_id=str(run_id),
        details={"role": role, "goal": options.goal, "stores": slugs or None},
    ):
        tenants, took_over = open_run(
            kit, box, spec, options, slugs, run_id, concurrency=concurrency
        )
    report = RunReport(run_id, role, options.goal, FleetRunStatus.RUNNING, len(tenants))
    report.took_over = took_over
    began = time.perf_counter()
    cancelled = threading.Event()
    recorder = Recorder(kit, run_id, on_cancel=cancelled.set)
    try:
        with kit.kept_alive(run_id, lock_keys=(lock_name(role),)) as lost:
            if on_start is not None:
                on_start(len(tenants))
            recorder.start()
            stopping = lambda: lost.is_set() or cancelled.is_set()  # noqa: E731
            # closing(): if the caller's callback raises, no new tenant is started and those
            # in hand finish before the lock is released below.
            with closing(_migrate_all(tenants, spec, options, concurrency, stopping)) as outcomes:
                for outcome in outcomes:
                    report.outcomes.append(outcome)
                    recorder.add(outcome)
                    if on_outcome is not None:
                        on_outcome(outcome)
            report.lost_lock = lost.is_set()
        if not report.lost_lock and len(report.outcomes) < len(tenants):
            # Stopped as asked: the tenants not started are accounted for, untouched.
            started = {o.store_id for o in report.outcomes}
            for db in tenants:
                if db.store_id not in started:
                    outcome = skipped(db.store_id, db.slug)
                    report.outcomes.append(outcome)
                    recorder.add(outcome)
                    if on_outcome is not None:
                        on_outcome(outcome)
        recorder.close()
        if report.lost_lock:
            report.status = FleetRunStatus.FAILED
        else:
            report.status = end_run(
                kit,
                run_id,
                total=len(tenants),
                counts=dict(report.counts),
                failed_slugs=sorted(o.slug for o in report.failures),
            )
    except LostClaim:
        report.lost_lock = True
        report.status = FleetRunStatus.FAILED
    finally:
        recorder.close()  # idempotent: what a failed run finished is still recorded
        report.seconds = time.perf_counter() - began
        if report.status == FleetRunStatus.RUNNING:  # an error escaped (an interrupt)
            report.status = FleetRunStatus.FAILED
            with suppress(LostClaim):
                kit.fail(run_id, f"interrupted after {len(report.outcomes)} tenants; {RUN_AGAIN}")
        kit.release_lock(lock_name(role))
        _audit_run(sessions, actor, report, slugs)
    return report


def _audit_run(
    sessions: sessionmaker[Session], actor: str, report: RunReport, slugs: list[str] | None
) -> None:
    """The run's one audit entry: succeeded, or failed with its counts (a cancelled run is
    one that did not do what was asked)."""
    ok = report.status == FleetRunStatus.SUCCEEDED
    try:
        with sessions.begin() as session:
            audit.record(
                session,
                actor=actor,
                action="fleet.migrate",
                target_type="fleet_run",
                target_id=str(report.run_id),
                details={
                    "role": report.role,
                    "goal": report.goal,
                    "stores": slugs or None,
                    "status": str(report.status),
                    "counts": dict(report.counts),
                    "failed": sorted(o.slug for o in report.failures)[:50],
                },
                outcome=audit.Outcome.SUCCEEDED if ok else audit.Outcome.FAILED,
            )
    except Exception:
        # Only reached while another error (or master's loss) is ending the run: that error
        # is the one to report.
        log.exception("could not write fleet run %s to the audit log", report.run_id)
