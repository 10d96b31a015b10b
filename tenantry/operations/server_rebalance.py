"""Rebalancing the fleet: the fewest store moves that bring the accepting servers within a
skew (``servers rebalance``, ``POST /database-servers/rebalance``), run as one resumable
``rebalance`` operation with a child ``move`` per store
(:class:`~tenantry.operations.move_batch.MoveBatch`), as a drain is.

:meth:`Rebalance.start` records the operation with what it was asked (the allowed skew and the
concurrency, in its params) or finds the unfinished one; :meth:`Rebalance.run` then plans from
where the stores are now (:func:`~tenantry.services.rebalance_plan.plan_rebalance`) and moves.
Resumable by a worker (the recovery sweep hands it one whose runner died): the moves its dead
run left half-way are rolled back first, the stores already moved count as done, and the plan
made again moves only what is still needed, as many at once as it was asked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantry.db.master.models import ACTIVE_STATUSES, Operation, OperationKind, ProgressUnit
from tenantry.operations.kit import OperationKit
from tenantry.operations.move_batch import (
    FAILED,
    MoveRunner,
    check_concurrency,
    recorded_concurrency,
)
from tenantry.operations.move_batch import StoreOutcome as StoreOutcome
from tenantry.runtime import Platform
from tenantry.services import audit
from tenantry.services.operation_rows import new_operation
from tenantry.services.rebalance_plan import (
    RebalancePlan,
    allowed_skew,
    parse_skew,
    plan_rebalance,
    read_fleet,
)

#: What starts a new rebalance, in messages.
AGAIN = "tenantry servers rebalance"


def plan(platform: Platform, max_skew: str) -> RebalancePlan:
    """The moves that would bring the servers within ``max_skew`` (a count or ``N%``)."""
    with platform.sessions() as session:
        return _plan(session, max_skew)


def _plan(session: Session, max_skew: str) -> RebalancePlan:
    value, percent = parse_skew(max_skew)
    fleet = read_fleet(session)
    return plan_rebalance(fleet, allowed_skew(fleet, value, percent))


def unfinished(session: Session) -> Operation | None:
    """The rebalance that is not over, if any (one runs at a time)."""
    return session.scalar(
        select(Operation)
        .where(Operation.kind == OperationKind.REBALANCE, Operation.status.in_(ACTIVE_STATUSES))
        .order_by(Operation.created_at.desc())
    )


@dataclass(frozen=True)
class RebalanceStart:
    """A rebalance recorded (or found unfinished, ``resumed``), with its plan as of now;
    ``operation_id`` is None when nothing needs to move and none was unfinished."""

    operation_id: uuid.UUID | None
    plan: RebalancePlan
    resumed: bool = False


@dataclass(frozen=True)
class RebalanceReport:
    """How a rebalance ended: every store's outcome and the plan it ran last."""

    operation_id: uuid.UUID
    status: str
    outcomes: list[StoreOutcome]
    plan: RebalancePlan


class Rebalance(MoveRunner):
    """Rebalances the servers on ``platform``'s master as ``actor``."""

    def start(self, max_skew: str, *, concurrency: int = 1) -> RebalanceStart:
        """Record a rebalance to ``max_skew`` (or find the unfinished one, which then keeps
        this skew and concurrency), in one transaction; audited. Nothing is recorded when no
        store needs to move."""
        check_concurrency(concurrency)
        kit = self._kit()
        with kit.sessions.begin() as session:
            rebalance = _plan(session, max_skew)
            params = {"max_skew": max_skew.strip(), "concurrency": concurrency}
            found = unfinished(session)
            if found is not None:
                found.params = {**(found.params or {}), **params}
                return RebalanceStart(found.id, rebalance, resumed=True)
            if not rebalance.moves:
                return RebalanceStart(None, rebalance)
            operation = new_operation(
                session,
                OperationKind.REBALANCE,
                target=f"skew {rebalance.allowed_skew}",
                requested_by=self.actor,
                total=len(rebalance.moves),
                unit=ProgressUnit.DATABASES,
                params=params,
            )
            audit.record(
                session,
                actor=self.actor,
                action="server.rebalance",
                target_type="database_server",
                target_id="*",
                details={
                    "operation_id": str(operation.id),
                    "allowed_skew": rebalance.allowed_skew,
                    "skew_before": rebalance.skew_before,
                    "moves": [m.document() for m in rebalance.moves],
                },
            )
            return RebalanceStart(operation.id, rebalance)

    def run(self, operation_id: uuid.UUID, *, concurrency: int | None = None) -> RebalanceReport:
        """Run (or resume) rebalance ``operation_id`` to its end, ``concurrency`` stores at
        once (None: as many as it was asked with); its report."""
        if concurrency is not None:
            check_concurrency(concurrency)
        kit = self._kit()
        operation = self.claim(kit, operation_id, again=AGAIN)
        if concurrency is None:
            concurrency = recorded_concurrency(operation)
        max_skew = str((operation.params or {}).get("max_skew", "1"))
        batch = self.batch(kit, operation_id)
        with kit.kept_alive(operation_id):
            batch.recover_orphans(wait_s=kit.lease.total_seconds() * 2 + 1)
            earlier = batch.earlier()
            rebalance = plan(self.platform, max_skew)
            total = len(earlier) + len(rebalance.moves)
            outcomes = batch.run(rebalance.moves, concurrency, done=len(earlier), total=total)
        return self._end(kit, operation_id, earlier + outcomes, rebalance, stopped=batch.stopped)

    def _end(
        self,
        kit: OperationKit,
        operation_id: uuid.UUID,
        outcomes: list[StoreOutcome],
        rebalance: RebalancePlan,
        *,
        stopped: bool,
    ) -> RebalanceReport:
        failed = [o for o in outcomes if o.status == FAILED]
        summary = f"{len(outcomes) - len(failed)} of {len(outcomes)} store(s) moved"
        if stopped and kit.cancel_requested(operation_id):
            kit.mark_cancelled(operation_id, message=summary + "; cancelled")
            status = "cancelled"
        elif failed:
            kit.fail(
                operation_id,
                f"{len(failed)} store(s) not moved: "
                + "; ".join(f"{o.slug}: {o.error}" for o in failed),
                message=summary + f"; run `{AGAIN}` again",
            )
            status = "failed"
        else:
            kit.finish(operation_id, message=summary)
            status = "succeeded"
        with kit.sessions.begin() as session:
            audit.record(
                session,
                actor=self.actor,
                action="server.rebalance.ended",
                target_type="database_server",
                target_id="*",
                details={
                    "operation_id": str(operation_id),
                    "status": status,
                    "moved": len(outcomes) - len(failed),
                    "not_moved": [o.slug for o in failed],
                },
            )
        return RebalanceReport(operation_id, status, outcomes, rebalance)

    def _kit(self) -> OperationKit:
        return OperationKit.from_settings(self.platform.sessions, self.platform.settings)
