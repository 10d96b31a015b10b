"""Processing billing webhook events: the worker loop that owns their transactions.

Intake stores each delivery as a ``billing_webhooks`` row in the billing database; this loop
claims the rows that are due, applies each in a savepoint of one batch transaction and records
its outcome (:mod:`tenantry.services.billing.webhooks` holds what is done with a row; here is
when it is committed).

Why these claims are not rows of master's ``operations`` table: the billing database is shared
by many apps and stands alone (it never holds a key into master, and master may not be the
same installation's for every app using it). An event is small, many arrive per second, and
its lease is its own row's ``processing`` status and start time, claimed with
``FOR UPDATE SKIP LOCKED`` in the same database as the effects it applies: a second
database's record per event would cost a master round trip each and could disagree with the
row it describes.
"""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tenantry.billing.processors.base import NormalizedEvent
from tenantry.db.billing.models import BillingWebhook
from tenantry.db.engines import writer
from tenantry.observability import metrics
from tenantry.services.billing import event_lookups, idempotency, subscriptions, webhooks

#: How often the loop also rolls subscription periods and purges idempotency keys.
PURGE_EVERY_S = 60.0


def claim(engine: Engine, *, limit: int = 50) -> list[uuid.UUID]:
    """Claim up to ``limit`` due events in a transaction of their own (committed before any
    is applied, so another worker skips them); their ids, oldest first."""
    with writer(engine).begin() as conn:
        return webhooks.claim_due(conn, limit=limit)


def _apply(session: Session, row: BillingWebhook) -> str:
    """Apply one event inside a savepoint; record processed | ignored | failed on the row."""
    try:
        with session.begin_nested():
            outcome = webhooks.apply(session, row)
    except Exception as exc:  # recorded on the row; retried with backoff unless permanent
        return webhooks.record_failure(row, exc)
    return webhooks.record_outcome(row, outcome)


def _apply_together(session: Session, rows: list[BillingWebhook]) -> dict[uuid.UUID, str]:
    """Apply events without a savepoint each, what they refer to read once for all of them
    (:func:`event_lookups.load_known`): a few statements per batch rather than several per event.
    Any event's error propagates, undoing the batch (it is then applied event by event)."""
    outcomes: dict[uuid.UUID, str] = {}
    parsed: dict[uuid.UUID, NormalizedEvent] = {}
    for row in rows:
        try:
            parsed[row.id] = webhooks.parse(row)
        except Exception as exc:  # the event's own fault: recorded, never retried
            outcomes[row.id] = webhooks.record_failure(row, exc)
    known = event_lookups.load_known(
        session, [(row.app_id, parsed[row.id]) for row in rows if row.id in parsed]
    )
    for row in rows:
        if row.id in parsed:
            outcome = webhooks.apply(session, row, known, parsed[row.id])
            outcomes[row.id] = webhooks.record_outcome(row, outcome)
    return outcomes


def _commit(
    sessions: sessionmaker[Session], ids: list[uuid.UUID], *, together: bool
) -> dict[uuid.UUID, str]:
    """Apply claimed events in one transaction and commit it: together, or each in its own
    savepoint (one event's failure is recorded on it and touches no other)."""
    bind = writer(sessions.kw["bind"])
    with sessions(bind=bind) as session, session.begin():
        rows = webhooks.claimed(session, ids)
        processors = {row.id: row.processor for row in rows}
        if together:
            outcomes = _apply_together(session, rows)
        else:
            outcomes = {row.id: _apply(session, row) for row in rows}
    # Counted once committed: a batch that fails is applied again, and counted then.
    for webhook_id, status in outcomes.items():
        metrics.webhook_processed(processors[webhook_id], status)
    return outcomes


def process_batch(sessions: sessionmaker[Session], ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Apply claimed events with one commit for the batch, which keeps throughput up.

    First all together (:func:`_apply_together`); if any event fails, the batch is undone
    and applied again with a savepoint per event, so the failure is recorded on its event
    alone; if even that commit fails, each event is applied in a transaction of its own.
    """
    if len(ids) > 1:
        try:
            return _commit(sessions, ids, together=True)
        except Exception:  # nothing committed; the savepoint pass records what failed
            pass
    try:
        return _commit(sessions, ids, together=False)
    except Exception:
        if len(ids) == 1:
            raise
    outcomes: dict[uuid.UUID, str] = {}
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


def housekeeping(sessions: sessionmaker[Session]) -> None:
    """Roll subscription periods that ended (cancelling those set to cancel at period end),
    then drop idempotency keys past their keeping time; each in its own transaction."""
    with sessions.begin() as session:
        subscriptions.renew_due(session)
    with sessions.begin() as session:
        idempotency.purge_expired(session)


def run_forever(
    sessions: sessionmaker[Session], stop: threading.Event, *, idle_sleep: float = 0.2
) -> None:
    """The worker's billing loop: process the webhook events that are due until ``stop`` is
    set; every :data:`PURGE_EVERY_S` also run :func:`housekeeping`."""
    next_purge = 0.0
    while not stop.is_set():
        try:
            if time.monotonic() >= next_purge:
                housekeeping(sessions)
                next_purge = time.monotonic() + PURGE_EVERY_S
            handled = process_pending(sessions)
        except Exception:  # a database hiccup must not kill the loop
            handled = 0
            stop.wait(2.0)
        if not handled:
            stop.wait(idle_sleep)
