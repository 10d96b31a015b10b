"""The moves of stores' databases, newest first (``stores moves list``, ``GET /moves``): where
from, where to, how each ended and what became of the source it kept. Only reads."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantry.db.master.models import StoreMove

#: The most moves one listing returns.
MAX_LIMIT = 500


def list_moves(
    session: Session,
    *,
    store_id: uuid.UUID | None = None,
    parent_id: uuid.UUID | None = None,
    limit: int = 100,
) -> list[StoreMove]:
    """Moves, newest first: of one store, or children of one operation (a drain), if given."""
    query = select(StoreMove).order_by(StoreMove.created_at.desc(), StoreMove.id)
    if store_id is not None:
        query = query.where(StoreMove.store_id == store_id)
    if parent_id is not None:
        query = query.where(StoreMove.parent_id == parent_id)
    return list(session.scalars(query.limit(max(1, min(limit, MAX_LIMIT)))))


def source_state(move: StoreMove) -> str:
    """What became of the source a move left: ``kept`` (until ``keep_source_until``),
    ``dropped``, ``gone`` (with its store), ``not_ours`` (tenantry did not create it, left as
    it is), or ``-`` for a move that did not complete (its store stayed on the source)."""
    if move.status != "completed":
        return "-"
    details = move.details or {}
    if move.keep_source_until is not None:
        return "kept"
    return str(details.get("source_drop") or "dropped")


def _where(location: dict[str, Any] | None) -> str:
    if not location:
        return "?"
    if location.get("engine") == "sqlite":
        return "sqlite file"
    server = location.get("server")
    database = location.get("database") or "?"
    return f"{server}/{database}" if server else f"{location.get('engine')}:{database}"


def move_row(move: StoreMove) -> dict[str, Any]:
    """One move for a listing (no secret: locations carry no password)."""
    details = move.details or {}
    return {
        "id": str(move.id),
        "store": move.slug,
        "store_id": str(move.store_id) if move.store_id else None,
        "from": _where(details.get("source")),
        "to": _where(details.get("target")) if details.get("target") else move.to_server,
        "to_server": move.to_server,
        "status": move.status,
        "error": move.error,
        "parent_id": str(move.parent_id) if move.parent_id else None,
        "started_at": move.started_at,
        "finished_at": move.finished_at,
        "keep_source_until": move.keep_source_until,
        "source": source_state(move),
        "source_dropped_at": details.get("source_dropped_at"),
    }
