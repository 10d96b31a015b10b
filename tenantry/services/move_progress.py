"""A running move's progress as its caller is told it, and a move's row as JSON (the run
itself, which records its progress on the move's operation, is
:mod:`tenantry.operations.move_run`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenantry.db.master.models import StoreMove


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
