"""Draining a database server: every store on it moved to another server (``servers drain``).

:meth:`ServerDrain.start` marks the server not accepting (placement stops choosing it) and
records a ``drain`` operation, in one master transaction; :meth:`ServerDrain.run` then plans a
target for every store still on the server (:func:`~tenantry.services.rebalance_plan.plan_drain`:
placement's rules, residency and capacity) and moves each with the move machinery, one child
``move`` operation per store (:class:`~tenantry.operations.move_batch.MoveBatch`).

Resumable: a drain whose process died is run again by ``servers drain`` (or a worker, which
the recovery sweep hands it to): the moves its dead run left half-way are rolled back first,
the stores already moved are no longer on the server, so every store is moved once. A store no
server may take is reported with its requirement; the others still move; the drain then ends
``failed`` naming it (run it again once a server fits).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantry.db.master.models import ACTIVE_STATUSES, Operation, OperationKind, ProgressUnit
from tenantry.operations.kit import OperationKit
from tenantry.operations.move_batch import FAILED, MoveRunner, recorded_concurrency
from tenantry.operations.move_batch import MAX_CONCURRENCY as MAX_CONCURRENCY
from tenantry.operations.move_batch import StoreOutcome as StoreOutcome
from tenantry.operations.move_batch import check_concurrency as check_concurrency
from tenantry.runtime import Platform
from tenantry.services import audit, placement_labels, servers
from tenantry.services.operation_rows import new_operation
from tenantry.services.placement import Policy
from tenantry.services.rebalance_plan import DrainPlan, Unplaced, plan_drain, read_fleet


@dataclass(frozen=True)
class DrainStart:
    """A drain recorded (or found unfinished, ``resumed``) and its plan as of now."""

    operation_id: uuid.UUID | None
    plan: DrainPlan
    resumed: bool = False


@dataclass(frozen=True)
class DrainReport:
    """How a drain ended: every store's outcome, and the stores no server could take."""

    operation_id: uuid.UUID
    server: str
    status: str
    outcomes: list[StoreOutcome]
    unplaced: list[Unplaced] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every store left the server."""
        return not self.unplaced and all(o.status != FAILED for o in self.outcomes)

    def document(self) -> dict[str, Any]:
        """The report as JSON."""
        return {
            "operation_id": str(self.operation_id),
            "server": self.server,
            "status": self.status,
            "stores": [o.document() for o in self.outcomes],
            "cannot_move": [u.document() for u in self.unplaced],
        }


def plan(platform: Platform, name: str) -> DrainPlan:
    """Where each store on server ``name`` would go now (changes nothing)."""
    with platform.sessions() as session:
        servers.get_server(session, name)  # an unknown server is refused
        return plan_drain(read_fleet(session), name, Policy(platform.settings.placement))


def unfinished(session: Session, name: str) -> Operation | None:
    """The drain of server ``name`` that is not over, if any."""
    return session.scalar(
        select(Operation)
        .where(
            Operation.kind == OperationKind.DRAIN,
            Operation.target == name,
            Operation.status.in_(ACTIVE_STATUSES),
        )
        .order_by(Operation.created_at.desc())
    )


def latest(session: Session, name: str) -> Operation | None:
    """The most recent drain of server ``name``."""
    return session.scalar(
        select(Operation)
        .where(Operation.kind == OperationKind.DRAIN, Operation.target == name)
        .order_by(Operation.created_at.desc())
    )


class ServerDrain(MoveRunner):
    """Drains servers on ``platform``'s master as ``actor``."""

    def start(self, name: str, *, concurrency: int = 1) -> DrainStart:
        """Mark server ``name`` not accepting and record its drain (or find the unfinished one
        to resume), in one transaction; audited. ``concurrency`` is recorded in the drain's
        params: a worker resuming it moves as many stores at once."""
        check_concurrency(concurrency)
        kit = self._kit()
        with kit.sessions.begin() as session:
            server = servers.get_server(session, name)
            placement_labels.configure_server(session, server, accepting=False, actor=self.actor)
            found = unfinished(session, name)
            drain_plan = plan_drain(
                read_fleet(session), name, Policy(self.platform.settings.placement)
            )
            if found is not None:
                found.params = {**(found.params or {}), "concurrency": concurrency}
                return DrainStart(found.id, drain_plan, resumed=True)
            operation = new_operation(
                session,
                OperationKind.DRAIN,
                target=name,
                requested_by=self.actor,
                total=len(drain_plan.moves) + len(drain_plan.unplaced),
                unit=ProgressUnit.DATABASES,
                params={"concurrency": concurrency},
            )
            audit.record(
                session,
                actor=self.actor,
                action="server.drain",
                target_type="database_server",
                target_id=name,
                details={
                    "operation_id": str(operation.id),
                    "stores": len(drain_plan.moves) + len(drain_plan.unplaced),
                    "cannot_move": [u.slug for u in drain_plan.unplaced],
                },
            )
            return DrainStart(operation.id, drain_plan)

    def run(self, operation_id: uuid.UUID, *, concurrency: int | None = None) -> DrainReport:
        """Run (or resume) drain ``operation_id`` to its end, ``concurrency`` stores at once
        (None: as many as it was asked with); its report."""
        if concurrency is not None:
            check_concurrency(concurrency)
        kit = self._kit()
        operation = self.claim(kit, operation_id, again="tenantry servers drain NAME")
        name = operation.target or ""
        if concurrency is None:
            concurrency = recorded_concurrency(operation)
        batch = self.batch(kit, operation_id)
        with kit.kept_alive(operation_id):
            batch.recover_orphans(wait_s=kit.lease.total_seconds() * 2 + 1)
            earlier = batch.earlier()
            with self.platform.sessions() as session:
                drain_plan = plan_drain(
                    read_fleet(session), name, Policy(self.platform.settings.placement)
                )
            total = len(earlier) + len(drain_plan.moves) + len(drain_plan.unplaced)
            outcomes = batch.run(drain_plan.moves, concurrency, done=len(earlier), total=total)
        report = DrainReport(operation_id, name, "", earlier + outcomes, drain_plan.unplaced)
        return self._end(kit, report, stopped=batch.stopped)

    def _end(self, kit: OperationKit, report: DrainReport, *, stopped: bool) -> DrainReport:
        moved = sum(1 for o in report.outcomes if o.status != FAILED)
        failed = [o for o in report.outcomes if o.status == FAILED]
        summary = f"{moved} store(s) moved off server {report.server}"
        if stopped and kit.cancel_requested(report.operation_id):
            kit.mark_cancelled(report.operation_id, message=summary + "; cancelled")
            status = "cancelled"
        elif report.complete:
            kit.finish(report.operation_id, message=summary)
            status = "succeeded"
        else:
            problems = [f"{o.slug}: {o.error}" for o in failed]
            problems += [u.why for u in report.unplaced]
            kit.fail(
                report.operation_id,
                f"{len(failed) + len(report.unplaced)} store(s) not moved: " + "; ".join(problems),
                message=summary + f"; run `tenantry servers drain {report.server}` again once "
                "the stores named can move",
            )
            status = "failed"
        with kit.sessions.begin() as session:
            audit.record(
                session,
                actor=self.actor,
                action="server.drain.ended",
                target_type="database_server",
                target_id=report.server,
                details={
                    "operation_id": str(report.operation_id),
                    "status": status,
                    "moved": moved,
                    "not_moved": [o.slug for o in failed] + [u.slug for u in report.unplaced],
                },
            )
        return DrainReport(
            report.operation_id, report.server, status, report.outcomes, report.unplaced
        )

    def _kit(self) -> OperationKit:
        return OperationKit.from_settings(self.platform.sessions, self.platform.settings)
