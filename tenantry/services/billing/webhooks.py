"""Webhook processing: applying the stored deliveries in the background, listing and replaying them.

The ``billing_webhooks`` row is the queue: intake (:mod:`~tenantry.services.billing.webhook_intake`,
with the signing secrets of :mod:`~tenantry.services.billing.webhook_secrets`) only verifies
the signature, reads the event and inserts it raw, so answering is fast and nothing answered
2xx can be lost. Workers claim rows (``FOR UPDATE SKIP LOCKED`` where the
database has it), apply them, and record processed | ignored | failed with attempts, last
error and the next attempt (exponential backoff; none for a failure that is the event's
own). Rows stuck in processing (a worker died) are claimed again.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta

from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, sessionmaker

from tenantry.billing.processors import UnknownProcessorError, get_processor
from tenantry.billing.processors.base import MalformedEvent
from tenantry.db.billing.models import BillingWebhook, WebhookStatus
from tenantry.db.engines import writer
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput
from tenantry.services import refs
from tenantry.services.billing import audit, idempotency, subscriptions
from tenantry.services.billing.events import apply_event

W = WebhookStatus
MAX_ATTEMPTS = 8
STUCK_AFTER = timedelta(minutes=5)
PURGE_EVERY_S = 60.0


# --------------------------------------------------------------------------- processing


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(3600, 2**attempts))


def claim(engine: Engine, *, limit: int = 50) -> list[uuid.UUID]:
    """Take up to ``limit`` events that are due: new, failed and due for retry, or stuck.

    An event stuck :data:`MAX_ATTEMPTS` times (a worker died applying it each time) is marked
    failed instead of being taken again: it may be what kills the worker.
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
    if engine.dialect.name != "sqlite":
        query = query.with_for_update(skip_locked=True)
    with writer(engine).begin() as conn:
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


def _apply(session: Session, row: BillingWebhook) -> str:
    """Apply one event inside a savepoint; record processed | ignored | failed on the row."""
    try:
        with session.begin_nested():
            event = get_processor(row.processor).parse(row.payload.encode("utf-8"))
            outcome = apply_event(session, row.app_id, event)
        row.status = outcome.status
        row.result = outcome.result[:255]
        row.processed_at = utcnow()
        row.last_error = None
        row.next_attempt_at = None
        return outcome.status
    except Exception as exc:  # recorded on the row; retried with backoff unless permanent
        permanent = isinstance(exc, PERMANENT)
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        row.status = W.FAILED
        row.last_error = f"{type(exc).__name__}: {first_line}"[:1900] + (
            " (not retried: applying this event again fails the same way)" if permanent else ""
        )
        row.next_attempt_at = (
            utcnow() + _backoff(row.attempts)
            if row.attempts < MAX_ATTEMPTS and not permanent
            else None
        )
        return W.FAILED


def process_batch(sessions: sessionmaker[Session], ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Apply claimed events in one transaction, each in its own savepoint (one event's
    failure is recorded on it and touches no other). One commit for the batch keeps
    throughput up; if that commit fails, every event is applied again on its own."""
    outcomes: dict[uuid.UUID, str] = {}
    bind = writer(sessions.kw["bind"])
    try:
        with sessions(bind=bind) as session, session.begin():
            rows = session.scalars(
                select(BillingWebhook)
                .where(BillingWebhook.id.in_(ids))
                .order_by(BillingWebhook.received_at)
            )
            for row in rows:
                outcomes[row.id] = _apply(session, row)
        return outcomes
    except Exception:
        if len(ids) == 1:
            raise
    for webhook_id in ids:  # the batch failed as a whole: one by one, so each gets its due
        try:
            outcomes.update(process_batch(sessions, [webhook_id]))
        except Exception:
            outcomes[webhook_id] = "error"
    return outcomes


def process_pending(sessions: sessionmaker[Session], *, limit: int = 50) -> int:
    """Claim and process what is due once; returns how many events were handled."""
    engine: Engine = sessions.kw["bind"]
    ids = claim(engine, limit=limit)
    if ids:
        process_batch(sessions, ids)
    return len(ids)


def run_forever(
    sessions: sessionmaker[Session], stop: threading.Event, *, idle_sleep: float = 0.2
) -> None:
    """The worker's billing loop: process the webhook events that are due until ``stop`` is
    set; every :data:`PURGE_EVERY_S` also roll subscription periods that ended (cancelling
    those set to cancel at period end) and drop idempotency keys past their keeping time."""
    next_purge = 0.0
    while not stop.is_set():
        try:
            if time.monotonic() >= next_purge:
                with sessions.begin() as session:
                    subscriptions.renew_due(session)
                with sessions.begin() as session:
                    idempotency.purge_expired(session)
                next_purge = time.monotonic() + PURGE_EVERY_S
            handled = process_pending(sessions)
        except Exception:  # a database hiccup must not kill the loop
            handled = 0
            stop.wait(2.0)
        if not handled:
            stop.wait(idle_sleep)


# --------------------------------------------------------------------------- operations


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
