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
from collections import Counter
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from tenantry.billing.processors.base import NormalizedEvent
from tenantry.db.billing.models import BillingWebhook
from tenantry.db.engines import writer
from tenantry.failpoints import failpoint
from tenantry.observability import metrics
from tenantry.operations.locks import is_deadlock
from tenantry.services.billing import event_lookups, idempotency, subscriptions, webhooks

#: How often the loop also rolls subscription periods and purges idempotency keys.
PURGE_EVERY_S = 60.0
#: Events claimed and applied per transaction. Larger batches spread each transaction's
#: fixed cost (claim, lookups, commit) over more events; on SQLite a batch holds the one
#: write lock while it is applied, so it stays small there: deliveries wait behind it.
BATCH = {"sqlite": 50}
DEFAULT_BATCH = 200
#: Tries of a claim that keeps losing deadlocks before the loop backs off.
CLAIM_ATTEMPTS = 5


#: What is recorded on each event's row, by event id (see ``webhooks.write_records``).
Records = dict[uuid.UUID, dict[str, Any]]


def batch_size(engine: Engine) -> int:
    """How many events a batch claims on ``engine``'s database."""
    return BATCH.get(engine.dialect.name, DEFAULT_BATCH)


def claim(engine: Engine, *, limit: int = DEFAULT_BATCH) -> list[webhooks.Claimed]:
    """Claim up to ``limit`` due events in a transaction of their own (committed before any
    is applied, so another worker skips them); oldest first. A claim that lost a deadlock
    to another worker's (MariaDB's row and gap locks) changed nothing and is tried again."""
    for attempt in range(1, CLAIM_ATTEMPTS + 1):
        try:
            with writer(engine).begin() as conn:
                return webhooks.claim_due(conn, limit=limit)
        except DBAPIError as exc:
            if not is_deadlock(exc) or attempt == CLAIM_ATTEMPTS:
                raise
    raise AssertionError("unreachable: the last attempt returns or raises")


def _apply(session: Session, row: BillingWebhook) -> str:
    """Apply one event inside a savepoint; record processed | ignored | failed on the row."""
    try:
        with session.begin_nested():
            outcome = webhooks.apply(session, row)
    except Exception as exc:  # recorded on the row; retried with backoff unless permanent
        return webhooks.record_failure(row, exc)
    return webhooks.record_outcome(row, outcome)


def _parse(batch: list[webhooks.Claimed]) -> tuple[dict[uuid.UUID, NormalizedEvent], Records]:
    """Each event read with its adapter (before any transaction: on SQLite the write lock is
    not held while events are parsed); the records of those that cannot be read."""
    parsed: dict[uuid.UUID, NormalizedEvent] = {}
    unreadable: Records = {}
    for event in batch:
        try:
            parsed[event.id] = webhooks.parse(event)
        except Exception as exc:  # the event's own fault: recorded, never retried
            unreadable[event.id] = webhooks.failure_values(event.attempts, exc)
    return parsed, unreadable


def _apply_together(
    session: Session,
    batch: list[webhooks.Claimed],
    parsed: dict[uuid.UUID, NormalizedEvent],
    records: Records,
) -> dict[uuid.UUID, str]:
    """Apply events without a savepoint each, what they refer to read once for all of them
    (:func:`event_lookups.load_known`), every outcome written in one statement: a few
    statements per batch rather than several per event. Any event's error propagates,
    undoing the batch (it is then applied event by event)."""
    records = dict(records)
    known = event_lookups.load_known(
        session, [(event.app_id, parsed[event.id]) for event in batch if event.id in parsed]
    )
    for event in batch:
        if event.id in parsed:
            outcome = webhooks.apply(session, event, known, parsed[event.id])
            records[event.id] = webhooks.outcome_values(outcome)
    webhooks.write_records(session, records)
    return {webhook_id: values["status"] for webhook_id, values in records.items()}


def _commit(
    sessions: sessionmaker[Session], batch: list[webhooks.Claimed], *, together: bool
) -> dict[uuid.UUID, str]:
    """Apply claimed events in one transaction and commit it: together, or each in its own
    savepoint (one event's failure is recorded on it and touches no other)."""
    parsed, unreadable = _parse(batch) if together else ({}, {})
    bind = writer(sessions.kw["bind"])
    with sessions(bind=bind) as session, session.begin():
        if together:
            outcomes = _apply_together(session, batch, parsed, unreadable)
        else:
            rows = webhooks.claimed(session, [event.id for event in batch])
            outcomes = {row.id: _apply(session, row) for row in rows}
        failpoint("webhooks.batch.applied")  # tests: the worker dies before committing
    # Counted once committed: a batch that fails is applied again, and counted then.
    processors = {event.id: event.processor for event in batch}
    counts = Counter((processors[webhook_id], status) for webhook_id, status in outcomes.items())
    for (processor, status), n in counts.items():
        metrics.webhook_processed(processor, status, n)
    return outcomes


def process_batch(
    sessions: sessionmaker[Session], batch: list[webhooks.Claimed]
) -> dict[uuid.UUID, str]:
    """Apply claimed events with one commit for the batch, which keeps throughput up.

    First all together (:func:`_apply_together`); if any event fails, the batch is undone
    and applied again with a savepoint per event, so the failure is recorded on its event
    alone; if even that commit fails, each event is applied in a transaction of its own.
    """
    if len(batch) > 1:
        try:
            return _commit(sessions, batch, together=True)
        except Exception:  # nothing committed; the savepoint pass records what failed
            pass
    try:
        return _commit(sessions, batch, together=False)
    except Exception:
        if len(batch) == 1:
            raise
    outcomes: dict[uuid.UUID, str] = {}
    for event in batch:  # the batch failed as a whole: one by one, so each gets its due
        try:
            outcomes.update(process_batch(sessions, [event]))
        except Exception:
            outcomes[event.id] = "error"
    return outcomes


def process_pending(sessions: sessionmaker[Session], *, limit: int | None = None) -> int:
    """Claim and process what is due once (``limit`` events at most, by default
    :func:`batch_size`); returns how many events were handled."""
    engine: Engine = sessions.kw["bind"]
    batch = claim(engine, limit=limit or batch_size(engine))
    if batch:
        process_batch(sessions, batch)
    return len(batch)


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
