"""A running move: its progress told to the caller on every change, and recorded on the move's
operation (rows copied, then rows verified, of the total: the kit's one progress shape) on a
new step or once a second, renewing the operation's lease and the store's write block with it:
the block ends when the lease does, so a mover that dies blocks writes only until then."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, update

from tenantry.db.master.models import ProgressUnit, Store, store_moves_table
from tenantry.db.types import utcnow
from tenantry.errors import TenantryError
from tenantry.operations.kit import LostClaim, OperationKit
from tenantry.services.move_plan import MovePlan
from tenantry.services.move_progress import MoveProgress, ProgressCallback
from tenantry.services.moves import LostMove

#: Progress (and the leases) is written to master at most this often.
WRITE_INTERVAL_S = 1.0
#: The steps at which a cancel request is still honoured: before the switch.
CANCELLABLE = frozenset(
    {"starting", "draining", "create_database", "create_tables", "copy", "verify"}
)


class MoveCancelled(TenantryError):
    """The move was asked to stop (``tenantry ops cancel``) before its switch."""


@dataclass
class MoveRun:
    """A move in progress, held by ``kit``: what is written to its records as it goes."""

    plan: MovePlan
    details: dict[str, Any]
    master: Engine
    kit: OperationKit
    on_progress: ProgressCallback | None = None
    step: str = "starting"
    progress: int = 0
    rows_copied: int = 0
    rows_hashed: int = 0  # verification hashes every row twice: in the source and the target
    last_write: float = field(default_factory=time.monotonic)
    #: Into a shared database: its pool login's password, saved with the store's connection
    #: at the switch (kept in memory only, never in the move's details).
    pool_password: str | None = field(default=None, repr=False)

    @property
    def total(self) -> int:
        """Rows to copy (and to verify)."""
        return sum(self.plan.counts.values())

    def lease_end(self) -> datetime:
        """When the lease (and the write block) lapses unless renewed again."""
        return utcnow() + self.kit.lease

    def report(self, step: str | None = None, progress: int | None = None) -> None:
        """Tell the caller; record it and renew the leases on a new step or once a second."""
        changed = step is not None and step != self.step
        self.step = step or self.step
        self.progress = progress if progress is not None else self.progress
        self.tell()
        if changed or time.monotonic() - self.last_write >= WRITE_INTERVAL_S:
            self.write()

    def tell(self) -> None:
        """Tell the caller where the move is (nothing is written)."""
        if self.on_progress is not None:
            self.on_progress(
                MoveProgress(
                    self.step, self.progress, self.rows_copied, self.rows_hashed // 2, self.total
                )
            )

    def write(self) -> None:
        """Record the progress and renew the lease and the block. A move taken over raises
        :class:`LostMove`; one asked to stop before its switch, :class:`MoveCancelled`."""
        plan = self.plan
        verifying = self.step == "verify"
        moves = store_moves_table
        try:
            cancel = self.kit.progress(
                plan.move_id,
                step=self.step,
                current=self.rows_hashed // 2 if verifying else self.rows_copied,
                total=self.total,
                unit=ProgressUnit.ROWS,
                message="verifying rows" if verifying else "copying rows",
                record=update(moves)
                .where(moves.c.id == plan.move_id)
                .values(progress=self.progress, details=dict(self.details)),
            )
        except LostClaim:
            raise self._lost() from None
        with self.master.begin() as conn:
            renewed = conn.execute(
                update(Store)
                .where(Store.id == plan.store_id, Store.write_block_reason == plan.reason)
                .values(write_block_until=self.lease_end())
            )
        if renewed.rowcount != 1:
            raise self._lost()
        self.last_write = time.monotonic()
        if cancel and self.step in CANCELLABLE:
            raise MoveCancelled(
                f"the move of store {plan.slug!r} was cancelled at step {self.step}.",
                "Nothing was switched: the store stays on its source database.",
            )

    def _lost(self) -> LostMove:
        return LostMove(
            "the move's lease lapsed and it was taken over (the mover stalled for over "
            f"{self.kit.lease.total_seconds():g} s).",
            "Run the move again.",
        )

    def copied(self, rows: int) -> None:
        """Count ``rows`` more copied (copying is 10 to 70 %)."""
        self.rows_copied += rows
        self.report(progress=10 + 60 * self.rows_copied // max(self.total, 1))

    def hashed(self, rows: int) -> None:
        """Count ``rows`` more hashed on either side (verifying is 70 to 95 %)."""
        self.rows_hashed += rows
        done = self.rows_hashed / max(2 * self.total, 1)
        self.report(progress=70 + int(25 * done))
