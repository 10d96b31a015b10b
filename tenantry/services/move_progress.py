"""A running move's progress: told to the caller on every change, written to its
``store_moves`` row (renewing the store's write block, a lease) on a new step or once a
second, and a move's row as JSON."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, update

from tenantry.db.master.models import Store, StoreMove, StoreMoveStatus
from tenantry.db.types import utcnow
from tenantry.errors import TenantryError
from tenantry.services.move_plan import MovePlan

#: Progress (and the write block's lease) is written to master at most this often.
WRITE_INTERVAL_S = 1.0


@dataclass(frozen=True)
class MoveProgress:
    """Where a running move is, for a progress bar."""

    step: str
    progress: int  # 0 to 100
    rows_copied: int
    rows_verified: int
    total_rows: int


ProgressCallback = Callable[[MoveProgress], None]


def move_document(move: StoreMove) -> dict[str, Any]:
    """A move as JSON (its details hold no secret)."""
    return {
        "id": str(move.id),
        "store_id": str(move.store_id),
        "slug": move.slug,
        "from_config_id": str(move.from_config_id),
        "to_config_id": str(move.to_config_id) if move.to_config_id else None,
        "to_server": move.to_server,
        "status": move.status,
        "step": move.step,
        "progress": move.progress,
        "details": move.details,
        "error": move.error,
        "keep_source_until": move.keep_source_until,
        "started_at": move.started_at,
        "finished_at": move.finished_at,
    }


@dataclass
class MoveRun:
    """A move in progress: what is written to its row as it goes, and the write block's lease
    renewed with it."""

    plan: MovePlan
    details: dict[str, Any]
    master: Engine
    lease_seconds: float
    on_progress: ProgressCallback | None = None
    step: str = "starting"
    progress: int = 0
    rows_copied: int = 0
    rows_hashed: int = 0  # verification hashes every row twice: in the source and the target
    last_write: float = field(default_factory=time.monotonic)

    @property
    def total(self) -> int:
        """Rows to copy (and to verify)."""
        return sum(self.plan.counts.values())

    def lease_end(self) -> datetime:
        """When the write block lapses unless renewed again."""
        return utcnow() + timedelta(seconds=self.lease_seconds)

    def report(self, step: str | None = None, progress: int | None = None) -> None:
        """Tell the caller; write the row and renew the block on a new step or once a second."""
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
        """Write the row and renew the block; a move taken over raises :class:`LostMove`."""
        plan = self.plan
        with self.master.begin() as conn:
            moved = conn.execute(
                update(StoreMove)
                .where(StoreMove.id == plan.move_id, StoreMove.status == StoreMoveStatus.RUNNING)
                .values(step=self.step, progress=self.progress, details=dict(self.details))
            )
            renewed = conn.execute(
                update(Store)
                .where(Store.id == plan.store_id, Store.write_block_reason == plan.reason)
                .values(write_block_until=self.lease_end())
            )
            if moved.rowcount != 1 or renewed.rowcount != 1:
                raise LostMove(
                    "the move's write block lapsed and was taken over (the mover stalled for "
                    f"over {self.lease_seconds:g} s).",
                    "Run the move again.",
                )
        self.last_write = time.monotonic()

    def copied(self, rows: int) -> None:
        """Count ``rows`` more copied (copying is 10 to 70 %)."""
        self.rows_copied += rows
        self.report(progress=10 + 60 * self.rows_copied // max(self.total, 1))

    def hashed(self, rows: int) -> None:
        """Count ``rows`` more hashed on either side (verifying is 70 to 95 %)."""
        self.rows_hashed += rows
        done = self.rows_hashed / max(2 * self.total, 1)
        self.report(progress=70 + int(25 * done))


class LostMove(TenantryError):
    """The move's row or write block was taken over (its lease lapsed): it must stop."""
