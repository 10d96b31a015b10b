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
from datetime import timedelta

from sqlalchemy import Connection, and_, or_, select, update
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


def claim_due(conn: Connection, *, limit: int = 50) -> list[uuid.UUID]:
    """Mark up to ``limit`` events that are due as processing, in the caller's transaction:
    new, failed and due for retry, or stuck. Returns their ids, oldest first.

    The claim is a lease on the row: ``processing_started_at`` is when it was taken, and a
    row held longer than :data:`STUCK_AFTER` is due again (its worker died). An event stuck
    :data:`MAX_ATTEMPTS` times is marked failed instead of being taken again: it may be what
    kills the worker. Rows are locked ``FOR UPDATE SKIP LOCKED`` where the database has it.
    """
    now = utcnow()
    stuck = and_(
        BillingWebhook.status == W.PROCESSING,
        BillingWebhook.processing_started_at < now - STUCK_AFTER,
    )
    due = or_(
        BillingWebhook.status == W.RECEIVED,
        and_(BillingWebhook.status == W.FAILED, BillingWebhook.next_attempt_at <= now),
        and_(stuck, BillingWebhook.attempts < MAX_ATTEMPTS),
    )
    query = select(BillingWebhook.id).where(due).order_by(BillingWebhook.received_at).limit(limit)
    if conn.dialect.name != "sqlite":
        query = query.with_for_update(skip_locked=True)
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
    ids = list(conn.scalars(query))
    if ids:
        conn.execute(
            update(BillingWebhook)
            .where(BillingWebhook.id.in_(ids))
            .values(
                status=W.PROCESSING,
                processing_started_at=now,
                attempts=BillingWebhook.attempts + 1,
            )
        )
    return ids


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


def parse(row: BillingWebhook) -> NormalizedEvent:
    """The stored event, read with its processor's adapter."""
    return get_processor(row.processor).parse(row.payload.encode("utf-8"))


def apply(
    session: Session,
    row: BillingWebhook,
    known: Known | None = None,
    event: NormalizedEvent | None = None,
) -> Outcome:
    """Apply the stored event's domain effects in ``session`` (idempotent: an event applied
    twice changes nothing the second time); ``known`` and ``event``: what its batch read."""
    return apply_event(session, row.app_id, event or parse(row), known)


def record_outcome(row: BillingWebhook, outcome: Outcome) -> str:
    """Record on the row that the event was applied: processed or ignored."""
    row.status = outcome.status
    row.result = outcome.result[:255]
    row.processed_at = utcnow()
    row.last_error = None
    row.next_attempt_at = None
    return outcome.status


def record_failure(row: BillingWebhook, exc: Exception) -> str:
    """Record on the row that applying the event failed with ``exc``: retried with
    exponential backoff until :data:`MAX_ATTEMPTS`, unless the failure is the event's own."""
    permanent = isinstance(exc, PERMANENT)
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    row.status = W.FAILED
    row.last_error = f"{type(exc).__name__}: {first_line}"[:1900] + (
        " (not retried: applying this event again fails the same way)" if permanent else ""
    )
    row.next_attempt_at = (
        utcnow() + _backoff(row.attempts) if row.attempts < MAX_ATTEMPTS and not permanent else None
    )
    return W.FAILED


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
