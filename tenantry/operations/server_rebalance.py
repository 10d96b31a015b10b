"""Rebalancing the fleet: the fewest store moves that bring the accepting servers within a
skew (``servers rebalance``), run as one ``rebalance`` operation with a child ``move`` per
store (:class:`~tenantry.operations.move_batch.MoveBatch`).

The plan is made from where the stores are now (:func:`~tenantry.services.rebalance_plan.
plan_rebalance`), so running it again after an interruption moves only what is still needed.
"""

from __future__ import annotations

import uuid

from tenantry.db.master.models import OperationKind, ProgressUnit
from tenantry.operations.kit import OperationKit
from tenantry.operations.move_batch import FAILED, MoveRunner
from tenantry.operations.move_batch import StoreOutcome as StoreOutcome
from tenantry.operations.server_drain import check_concurrency
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


def plan(platform: Platform, max_skew: str) -> RebalancePlan:
    """The moves that would bring the servers within ``max_skew`` (a count or ``N%``)."""
    value, percent = parse_skew(max_skew)
    with platform.sessions() as session:
        fleet = read_fleet(session)
    return plan_rebalance(fleet, allowed_skew(fleet, value, percent))


class Rebalance(MoveRunner):
    """Runs a rebalance plan on ``platform`` as ``actor``."""

    def run(
        self, rebalance: RebalancePlan, *, concurrency: int = 1
    ) -> tuple[uuid.UUID, list[StoreOutcome]]:
        """Record the rebalance and move each planned store; its id and the outcomes."""
        check_concurrency(concurrency)
        kit = OperationKit.from_settings(self.platform.sessions, self.platform.settings)
        with kit.sessions.begin() as session:
            operation = new_operation(
                session,
                OperationKind.REBALANCE,
                target=f"skew {rebalance.allowed_skew}",
                requested_by=self.actor,
                total=len(rebalance.moves),
                unit=ProgressUnit.DATABASES,
            )
            operation_id = operation.id
            audit.record(
                session,
                actor=self.actor,
                action="server.rebalance",
                target_type="database_server",
                target_id="*",
                details={
                    "operation_id": str(operation_id),
                    "allowed_skew": rebalance.allowed_skew,
                    "skew_before": rebalance.skew_before,
                    "moves": [m.document() for m in rebalance.moves],
                },
            )
        kit.claim(operation_id)
        batch = self.batch(kit, operation_id)
        with kit.kept_alive(operation_id):
            outcomes = batch.run(rebalance.moves, concurrency, done=0, total=len(rebalance.moves))
        failed = [o for o in outcomes if o.status == FAILED]
        summary = f"{len(outcomes) - len(failed)} of {len(outcomes)} store(s) moved"
        if failed:
            kit.fail(
                operation_id,
                f"{len(failed)} store(s) not moved: "
                + "; ".join(f"{o.slug}: {o.error}" for o in failed),
                message=summary + "; run `tenantry servers rebalance` again",
            )
        else:
            kit.finish(operation_id, message=summary)
        return operation_id, outcomes
