"""Dropping the source databases completed moves kept, once their keep period is over.

A completed move keeps its source (read-only) until ``keep_source_until``
(``TENANTRY_MOVE_KEEP_SOURCE_DAYS`` after the switch). The worker's scheduler tick
(:func:`tenantry.operations.work.backup_tick`) calls :func:`drop_due_sources`: one scheduler at
a time (an operation lock), at most ``limit`` sources a tick, oldest first, each drop audited.
A dropped source's move gets ``details.source_dropped_at`` and no ``keep_source_until`` any more
(so it is never picked again); a source tenantry did not create, or one already gone with its
store, is marked so and left alone. A drop that fails is tried again an hour later, its error
kept in the move's details.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox
from tenantry.db.master.models import IntegrationConfig, OperationStatus, StoreMove
from tenantry.db.types import utcnow
from tenantry.db.urls import mask
from tenantry.operations.kit import OperationKit
from tenantry.services import audit
from tenantry.services.connections import migrator_url
from tenantry.services.move_leftovers import drop_location
from tenantry.services.moves import describe

log = logging.getLogger("tenantry.jobs")

#: The scheduler's lock: one process drops kept sources at a time.
SOURCE_DROP_LOCK = "move-source-drop"
#: Sources dropped per scheduler tick at most (each is one DROP DATABASE).
PER_TICK = 10
#: A failed drop is tried again this much later.
RETRY_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class SourceDrop:
    """What became of one move's kept source: ``dropped``, ``gone``, ``not_ours``, ``failed``."""

    move_id: uuid.UUID
    slug: str
    outcome: str
    where: str | None = None
    error: str | None = None


def drop_due_sources(
    sessions: sessionmaker[Session],
    box: SecretBox,
    kit: OperationKit,
    *,
    now: datetime | None = None,
    limit: int = PER_TICK,
    actor: str = audit.SCHEDULER,
) -> list[SourceDrop]:
    """Drop up to ``limit`` kept sources whose keep period ended by ``now``, unless another
    process is dropping them (then nothing); what became of each."""
    with kit.lock_if_free(SOURCE_DROP_LOCK) as mine:
        if not mine:
            return []
        when = now or utcnow()
        with sessions() as session:
            due = list(
                session.scalars(
                    select(StoreMove.id)
                    .where(
                        StoreMove.operation_status == OperationStatus.SUCCEEDED,
                        StoreMove.keep_source_until.is_not(None),
                        StoreMove.keep_source_until <= when,
                    )
                    .order_by(StoreMove.keep_source_until)
                    .limit(limit)
                )
            )
        done = []
        for move_id in due:
            done.append(_drop_one(kit, box, move_id, when, actor))
            kit.renew_lock(SOURCE_DROP_LOCK)
    for drop in done:
        if drop.outcome == "failed":
            log.warning("dropping the source of move %s failed: %s", drop.move_id, drop.error)
        else:
            log.info("source of move %s (store %s): %s", drop.move_id, drop.slug, drop.outcome)
    return done


def _drop_one(
    kit: OperationKit, box: SecretBox, move_id: uuid.UUID, now: datetime, actor: str
) -> SourceDrop:
    with kit.sessions() as session:
        move = session.get_one(StoreMove, move_id)
        config = session.get(IntegrationConfig, move.from_config_id)
        slug = move.slug or "?"
        if config is None or config.is_active:
            return _record(kit, move_id, slug, "gone", now, actor)
        if not config.created_by_tenantry:
            return _record(kit, move_id, slug, "not_ours", now, actor)
        url = migrator_url(session, box, config)
        role = config.config_data.get("role") if config.db_schema else None
    where = mask(url)
    try:
        # A schema source: its schema and role only (the role stays while the store still
        # uses it in another database), never the shared database.
        drop_location(url, str(role) if role else None)
    except Exception as exc:  # tried again later; the next source is not held up
        return _record(kit, move_id, slug, "failed", now, actor, where, describe(exc))
    return _record(kit, move_id, slug, "dropped", now, actor, where)


def _record(
    kit: OperationKit,
    move_id: uuid.UUID,
    slug: str,
    outcome: str,
    now: datetime,
    actor: str,
    where: str | None = None,
    error: str | None = None,
) -> SourceDrop:
    """Write what became of the source on its move, audited, in one transaction."""
    with kit.sessions.begin() as session:
        move = session.get_one(StoreMove, move_id)
        details: dict[str, Any] = dict(move.details or {})
        if outcome == "failed":
            details["source_drop_error"] = error
            move.keep_source_until = now + RETRY_AFTER
        else:
            details.pop("source_drop_error", None)
            details["source_dropped_at"] = now.isoformat() if outcome == "dropped" else None
            details["source_drop"] = outcome
            move.keep_source_until = None
        move.details = details
        audit.record(
            session,
            actor=actor,
            action="store.move.source_left"
            if outcome in ("gone", "not_ours")
            else "store.move.source_dropped",
            target_type="store",
            target_id=slug,
            store_id=move.store_id,
            details={"move_id": str(move_id), "outcome": outcome, "source": where, "error": error},
            outcome=audit.Outcome.FAILED if outcome == "failed" else audit.Outcome.SUCCEEDED,
        )
    return SourceDrop(move_id, slug, outcome, where, error)
