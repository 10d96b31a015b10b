"""Webhook events after intake: claiming, applying and recording them; listing and replaying.

The ``billing_webhooks`` row is the queue: intake (:mod:`~tenantry.services.billing.webhook_intake`,
with the signing secrets of :mod:`~tenantry.services.billing.webhook_secrets`) only verifies
the signature, reads the event and inserts it raw, so answering is fast and nothing answered
2xx can be lost. Here is what is done with a row, each on the caller's connection or session:
claim it (a lease: ``FOR UPDATE SKIP LOCKED`` where the database has it), apply it, and record
processed | ignored | failed with attempts, last error and the next attempt (exponential
backoff; none for a failure that is the event's own). Rows stuck in processing (a worker died)
are claimed again. The loop that owns the transactions around these is
:mod:`tenantry.operations.process_webhooks`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Connection,
    Table,
    and_,
    bindparam,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session

from tenantry.billing.processors import UnknownProcessorError, get_processor
from tenantry.billing.processors.base import MalformedEvent, NormalizedEvent
from tenantry.db.billing.models import BillingWebhook, WebhookStatus
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput
from tenantry.services import refs
from tenantry.services.billing import audit
from tenantry.services.billing.event_lookups import Known
from tenantry.services.billing.events import Outcome, apply_event

W = WebhookStatus
MAX_ATTEMPTS = 8
STUCK_AFTER = timedelta(minutes=5)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(3600, 2**attempts))


@dataclass(frozen=True)
class Claimed:
    """A claimed event as its claim read it: what applying and recording it need."""

    id: uuid.UUID
    app_id: str
    processor: str
    payload: str
    #: Counting this claim.
    attempts: int
    received_at: datetime


_CLAIMED_COLUMNS = (
    BillingWebhook.id,
    BillingWebhook.app_id,
    BillingWebhook.processor,
    BillingWebhook.payload,
    BillingWebhook.attempts,
    BillingWebhook.received_at,
)


def claim_due(conn: Connection, *, limit: int = 50) -> list[Claimed]:
    """Mark up to ``limit`` events that are due as processing, in the caller's transaction:
    failed and due for retry, or stuck, oldest first; then new ones, oldest first.

    The claim is a lease on the row: ``processing_started_at`` is when it was taken, and a
    row held longer than :data:`STUCK_AFTER` is due again (its worker died). An event stuck
    :data:`MAX_ATTEMPTS` times is marked failed instead of being taken again: it may be what
    kills the worker. Rows are locked ``FOR UPDATE SKIP LOCKED`` where the database has it.
    New events are taken in the order of the (status, received_at) index, so a claim reads
    its batch, not every waiting or stored event.
    """
    now = utcnow()
    stuck = and_(
        BillingWebhook.status == W.PROCESSING,
        BillingWebhook.processing_started_at < now - STUCK_AFTER,
    )
    conn.execute(
        update(BillingWebhook)
        .where(stuck, BillingWebhook.attempts >= MAX_ATTEMPTS)
        .values(
            status=W.FAILED,
            next_attempt_at=None,
            last_error=f"a worker stopped while applying it, {MAX_ATTEMPTS} times "
            "(not retried; replay it once the cause is fixed)",
        )
    )
    retry = or_(
        and_(BillingWebhook.status == W.FAILED, BillingWebhook.next_attempt_at <= now),
        and_(stuck, BillingWebhook.attempts < MAX_ATTEMPTS),
    )
    claimed = _claim(conn, retry, limit, now)
    if len(claimed) < limit:
        claimed += _claim(conn, BillingWebhook.status == W.RECEIVED, limit - len(claimed), now)
    return claimed


def _claim(conn: Connection, due: ColumnElement[bool], limit: int, now: datetime) -> list[Claimed]:
    """Mark up to ``limit`` rows matching ``due`` as processing, oldest first; where the
    database has ``UPDATE … RETURNING`` (PostgreSQL, SQLite), chosen, marked and read in one
    statement."""
    chosen = (
        select(BillingWebhook.id)
        .where(due)
        .order_by(BillingWebhook.received_at)
        .limit(limit)
        .correlate(None)  # a subquery of its own, not correlated with the UPDATE below
    )
    if conn.dialect.name != "sqlite":
        chosen = chosen.with_for_update(skip_locked=True)
    mark = update(BillingWebhook).values(
        status=W.PROCESSING, processing_started_at=now, attempts=BillingWebhook.attempts + 1
    )
    if conn.dialect.update_returning:
        rows = conn.execute(
            mark.where(BillingWebhook.id.in_(chosen.scalar_subquery())).returning(*_CLAIMED_COLUMNS)
        )
        claimed = [Claimed(*row) for row in rows]
        return sorted(claimed, key=lambda c: c.received_at)  # RETURNING keeps no order
    found = list(conn.execute(chosen.with_only_columns(*_CLAIMED_COLUMNS)))
    if found:
        conn.execute(mark.where(BillingWebhook.id.in_([row.id for row in found])))
    return [
        Claimed(row.id, row.app_id, row.processor, row.payload, row.attempts + 1, row.received_at)
        for row in found
    ]


#: Failures that are the event's, not the moment's: applying it again fails the same way.
#: A body the adapter cannot read (stored before ingestion parsed events, or read
#: differently since); a value the database refuses (out of range, too long).
PERMANENT = (MalformedEvent, UnknownProcessorError, DataError)


def claimed(session: Session, ids: list[uuid.UUID]) -> list[BillingWebhook]:
    """The rows of claimed events ``ids``, in the order they were received."""
    return list(
        session.scalars(
            select(BillingWebhook)
            .where(BillingWebhook.id.in_(ids))
            .order_by(BillingWebhook.received_at)
        )
    )


def parse(row: BillingWebhook | Claimed) -> NormalizedEvent:
    """The stored event, read with its processor's adapter."""
    return get_processor(row.processor).parse(row.payload.encode("utf-8"))


def apply(
    session: Session,
    row: BillingWebhook | Claimed,
    known: Known | None = None,
    event: NormalizedEvent | None = None,
) -> Outcome:
    """Apply the stored event's domain effects in ``session`` (idempotent: an event applied
    twice changes nothing the second time); ``known`` and ``event``: what its batch read."""
    return apply_event(session, row.app_id, event or parse(row), known)


def outcome_values(outcome: Outcome) -> dict[str, Any]:
    """What a row records once its event was applied: processed or ignored."""
    return {
        "status": outcome.status,
        "result": outcome.result[:255],
        "processed_at": utcnow(),
        "last_error": None,
        "next_attempt_at": None,
    }


def failure_values(attempts: int, exc: Exception) -> dict[str, Any]:
    """What a row records when applying its event failed with ``exc`` on attempt
    ``attempts``: retried with exponential backoff until :data:`MAX_ATTEMPTS`, unless the
    failure is the event's own."""
    permanent = isinstance(exc, PERMANENT)
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return {
        "status": W.FAILED,
        "last_error": f"{type(exc).__name__}: {first_line}"[:1900]
        + (" (not retried: applying this event again fails the same way)" if permanent else ""),
        "next_attempt_at": (
            utcnow() + _backoff(attempts) if attempts < MAX_ATTEMPTS and not permanent else None
        ),
    }


def record_outcome(row: BillingWebhook, outcome: Outcome) -> str:
    """Record on the row that the event was applied: processed or ignored."""
    for name, value in outcome_values(outcome).items():
        setattr(row, name, value)
    return outcome.status


def record_failure(row: BillingWebhook, exc: Exception) -> str:
    """Record on the row that applying the event failed with ``exc`` (see
    :func:`failure_values`)."""
    for name, value in failure_values(row.attempts, exc).items():
        setattr(row, name, value)
    return W.FAILED


def write_records(session: Session, records: dict[uuid.UUID, dict[str, Any]]) -> None:
    """Write what :func:`outcome_values` and :func:`failure_values` made for rows by id, in
    one statement per kind of record (not one per row)."""
    table = cast(Table, BillingWebhook.__table__)
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for webhook_id, values in records.items():
        params = {f"v_{name}": value for name, value in values.items()}
        params["v_id"] = webhook_id
        by_columns.setdefault(tuple(values), []).append(params)
    conn = session.connection()  # Core: an executemany, not the ORM's UPDATE by primary key
    for columns, rows in by_columns.items():
        conn.execute(
            update(table)
            .where(table.c.id == bindparam("v_id"))
            .values({name: bindparam(f"v_{name}") for name in columns}),
            rows,
        )


# --------------------------------------------------------------------------- listing, replaying


def list_webhooks(
    session: Session, *, app_id: str | None = None, status: str | None = None, limit: int = 50
) -> list[BillingWebhook]:
    """Events, newest first."""
    query = select(BillingWebhook)
    if app_id:
        query = query.where(BillingWebhook.app_id == app_id)
    if status:
        if status not in {s.value for s in W}:
            raise InvalidInput(
                f"unknown status {status!r}.", f"Use one of: {', '.join(s.value for s in W)}."
            )
        query = query.where(BillingWebhook.status == status)
    return list(session.scalars(query.order_by(BillingWebhook.received_at.desc()).limit(limit)))


def get_webhook(session: Session, webhook_id: str, *, app_id: str | None = None) -> BillingWebhook:
    """One event by processor event id, tenantry id, or the start of a tenantry id."""
    scope = BillingWebhook.app_id == app_id if app_id is not None else None
    by_event = select(BillingWebhook).where(BillingWebhook.event_id == webhook_id)
    if scope is not None:
        by_event = by_event.where(scope)
    # The same event id may reach several apps: only one app's row is an answer.
    events = list(session.scalars(by_event.limit(2)))
    if len(events) == 1:
        return events[0]
    if len(events) > 1:
        raise Conflict(
            f"several stored webhook events have the event id {webhook_id!r} "
            "(delivered to several apps or by several processors).",
            "Name the event by its tenantry id (see `tenantry billing webhooks list`).",
        )
    return refs.find(
        session,
        BillingWebhook,
        webhook_id,
        what="webhook event",
        hint="List events with `tenantry billing webhooks list`.",
        where=scope,
    )


def replay(session: Session, row: BillingWebhook, *, actor: str) -> BillingWebhook:
    """Queue an event to be applied again (effects are idempotent: nothing doubles)."""
    if (
        row.status == W.PROCESSING
        and row.processing_started_at is not None
        and (utcnow() - row.processing_started_at < STUCK_AFTER)
    ):
        raise Conflict(
            f"event {row.event_id} is being processed right now.",
            "Replay it once it is processed or failed.",
        )
    row.status = W.RECEIVED
    row.next_attempt_at = None
    row.last_error = None
    audit.record(
        session,
        app_id=row.app_id,
        actor=actor,
        action="webhook.replay",
        target_type="billing_webhook",
        target_id=str(row.id),
        details={"event_id": row.event_id},
    )
    return row


def replay_failed(session: Session, *, actor: str, app_id: str | None = None) -> int:
    """Queue every failed event again; returns how many."""
    rows = list_webhooks(session, app_id=app_id, status=W.FAILED, limit=100_000)
    for row in rows:
        replay(session, row, actor=actor)
    return len(rows)
