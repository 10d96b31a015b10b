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

from tenantry.db.billing.models import BillingWebhook
from tenantry.db.engines import writer
from tenantry.observability import metrics
from tenantry.services.billing import idempotency, subscriptions, webhooks

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


def process_batch(sessions: sessionmaker[Session], ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Apply claimed events in one transaction, each in its own savepoint (one event's
    failure is recorded on it and touches no other). One commit for the batch keeps
    throughput up; if that commit fails, every event is applied again on its own."""
    outcomes: dict[uuid.UUID, str] = {}
    processors: dict[uuid.UUID, str] = {}
    bind = writer(sessions.kw["bind"])
    try:
        with sessions(bind=bind) as session, session.begin():
            for row in webhooks.claimed(session, ids):
                processors[row.id] = row.processor
                outcomes[row.id] = _apply(session, row)
        # Counted once committed: a batch that fails is applied again, and counted then.
        for webhook_id, status in outcomes.items():
            metrics.webhook_processed(processors[webhook_id], status)
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
