"""Rolling a move back: what a failed, cancelled or abandoned move undoes, and how it ends.

A move that fails or is cancelled before its switch undoes what it made (:func:`undo_move`: the
source writable again, the target dropped); one whose mover died is taken over by the store's
next move (:meth:`MoveRollback.take_over`, then :meth:`~MoveRollback.clean_up`) or by the
workers' sweep (:meth:`MoveRollback.recover_stalled`). Either way the write block is lifted,
the rollback audited and the move's operation ended ``failed`` (``cancelled`` when asked to
stop), the move ``rolled_back``: the store stays on its source.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db import admin, logins, shared_schemas
from tenantry.db.master.models import (
    ACTIVE_STATUSES,
    Operation,
    OperationStatus,
    StoreMove,
    store_moves_table,
)
from tenantry.db.readonly import make_writable
from tenantry.db.types import utcnow
from tenantry.db.urls import mask
from tenantry.errors import Conflict, TenantryError
from tenantry.operations.kit import LostClaim, OperationKit
from tenantry.services import moves
from tenantry.services.move_leftovers import (
    abandoned_error,
    drop_abandoned_target,
    restore_abandoned_source,
)
from tenantry.services.move_plan import MovePlan, block_reason
from tenantry.services.moves import describe
from tenantry.services.operation_rows import lease_lapsed


@dataclass
class MoveRollback:
    """Ends moves rolled back, holding (or taking over) their operations with ``kit``."""

    sessions: sessionmaker[Session]
    box: SecretBox
    kit: OperationKit
    actor: str

    def take_over(self, session: Session, dead: StoreMove, *, by: uuid.UUID | None) -> None:
        """Record the move ``dead`` (its lease lapsed) as failed, in ``session``; a live
        holder's move (its lease renewed meanwhile) is a :class:`Conflict`."""
        taken = (
            session.connection()
            .execute(
                update(Operation)
                .where(
                    Operation.id == dead.id,
                    Operation.status.in_(ACTIVE_STATUSES),
                    lease_lapsed(utcnow()),
                )
                .values(
                    status=OperationStatus.FAILED,
                    step="abandoned",
                    error=abandoned_error(by, dead.step),
                    finished_at=utcnow(),
                    lease_expires_at=None,
                    updated_at=utcnow(),
                )
            )
            .rowcount
        )
        if taken != 1:
            raise Conflict(
                f"store {dead.slug!r} is already being moved to server {dead.to_server!r} "
                f"(move {dead.id}).",
                "Wait for it to finish.",
            )
        moves.release_rolled_back(
            session,
            dead,
            reason=block_reason(dead.id, dead.to_server),
            message=abandoned_error(by, dead.step),
            failed_at=dead.step,
            actor=self.actor,
        )

    def clean_up(self, dead: StoreMove) -> None:
        """Undo what a dead mover left: its source writable again, its target dropped."""
        restore_abandoned_source(self.sessions, self.box, dead)
        dropped = drop_abandoned_target(self.sessions, self.box, dead)
        moves_table = store_moves_table
        with self.kit.engine.begin() as conn:
            conn.execute(
                update(moves_table)
                .where(moves_table.c.id == dead.id)
                .values(details={**(dead.details or {}), "target_dropped": dropped})
            )

    def end(
        self,
        move: StoreMove,
        details: dict[str, object],
        message: str,
        failed_at: str | None,
        *,
        cancelled: bool,
    ) -> None:
        """Lift the block, audit, and end the held operation ``failed`` or ``cancelled``."""
        moves_table = store_moves_table
        record = (
            update(moves_table).where(moves_table.c.id == move.id).values(details=dict(details))
        )
        move.details = dict(details)
        with self.sessions.begin() as session:
            moves.release_rolled_back(
                session,
                move,
                reason=block_reason(move.id, move.to_server),
                message=message,
                failed_at=failed_at,
                actor=self.actor,
            )
        try:
            if cancelled:
                self.kit.mark_cancelled(move.id, message=message, record=record)
            else:
                self.kit.progress(move.id, step="rolled_back", record=record)
                self.kit.fail(move.id, message, message="rolled back")
        except LostClaim:
            pass  # taken over meanwhile: the process that took it records how it ended

    def recover_stalled(self, move_id: uuid.UUID) -> str | None:
        """Roll back move ``move_id`` whose mover died (its lease lapsed): the store stays on
        its source, writable, the target dropped; the operation ends ``failed`` (``cancelled``
        if it was asked to stop). Its final status, or None when it is not stalled."""
        claim = self.kit.claim(move_id)
        if claim is None:
            return None
        with self.sessions() as session:
            move = moves.load_move(session, move_id)
        restore_abandoned_source(self.sessions, self.box, move)
        details = dict(move.details or {})
        details["target_dropped"] = drop_abandoned_target(self.sessions, self.box, move)
        message = abandoned_error(None, move.step)
        self.end(move, details, message, move.step, cancelled=claim.cancel_requested)
        return OperationStatus.CANCELLED if claim.cancel_requested else OperationStatus.FAILED


def undo_move(plan: MovePlan, details: dict[str, object]) -> str:
    """Make the source writable again and drop the target the move created (recorded in
    ``details``); what could not be undone, as sentences for the move's error."""
    said = ""
    before = details.get("source_before")
    if isinstance(before, dict):
        try:
            make_writable(plan.source_url, before)
            details["source_read_only"] = {"applied": False, "how": "undone"}
        except Exception as undo_exc:
            details["source_writable_error"] = describe(undo_exc)
            said += (
                f" The source {mask(plan.source_url)} could not be made writable again: "
                f"{details['source_writable_error']}"
            )
    dropped, drop_error = False, None
    if details.get("target_created"):
        try:
            if plan.shared is not None:  # its schema and role only, never the database
                place = plan.shared
                dropped = shared_schemas.drop_tenant_schema(
                    place.admin, place.database, place.schema, place.role
                )
            else:
                dropped = admin.drop_database(plan.target_url)
        except Exception as drop_exc:
            drop_error = describe(drop_exc)
    details["target_dropped"] = dropped
    login = details.get("target_login")
    if dropped and isinstance(login, str):  # the runtime login made for it goes with it
        try:
            details["target_login_dropped"] = logins.drop_login(plan.target_url, login)
        except TenantryError as login_exc:
            details["target_login_drop_error"] = login_exc.message
    if drop_error is not None:
        details["target_drop_error"] = drop_error
        said += (
            f" The target database {mask(plan.target_url)} could not be dropped "
            f"({drop_error}); it is left on the server: drop it by hand."
        )
    return said
