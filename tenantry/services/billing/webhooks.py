"""Webhook ingestion and processing: verify, store once, answer, then apply in the background.

The ``billing_webhooks`` row is the queue: ingestion only verifies the signature, reads the
event and inserts it raw (unique on app + processor + event id), so answering is fast and
nothing answered 2xx can be lost. Workers claim rows (``FOR UPDATE SKIP LOCKED`` where the
database has it), apply them, and record processed | ignored | failed with attempts, last
error and the next attempt (exponential backoff; none for a failure that is the event's
own). Rows stuck in processing (a worker died) are claimed again.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DataError
from sqlalchemy.orm import Session, sessionmaker

from tenantry.billing.processors import PROCESSORS, UnknownProcessorError, get_processor
from tenantry.billing.processors.base import MalformedEvent, Processor, SignatureError
from tenantry.crypto import SecretBox
from tenantry.db.billing.models import BillingProcessorSecret, BillingWebhook, WebhookStatus
from tenantry.db.engines import writer
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput, MalformedPayload, NotFound, Unauthorized
from tenantry.services import refs
from tenantry.services.billing import audit, idempotency, subscriptions, validation
from tenantry.services.billing.events import apply_event

W = WebhookStatus
MAX_ATTEMPTS = 8
STUCK_AFTER = timedelta(minutes=5)
SECRET_CACHE_S = 5.0
PURGE_EVERY_S = 60.0


def processor_named(name: str) -> Processor:
    """The adapter called ``name``, or :class:`NotFound` listing the known ones."""
    try:
        return get_processor(name)
    except KeyError:
        raise NotFound(
            f"unknown payment processor {name!r}.", f"Use one of: {', '.join(sorted(PROCESSORS))}."
        ) from None


# --------------------------------------------------------------------------- secrets


def add_secret(
    session: Session,
    box: SecretBox,
    app_id: str,
    processor: str,
    secret: str,
    *,
    actor: str = "cli",
) -> BillingProcessorSecret:
    """Add a signing secret for ``app_id`` at ``processor`` (several may be active)."""
    validation.app_id(app_id)
    processor_named(processor)
    if len(secret.strip()) < 8:
        raise InvalidInput("a signing secret must have at least 8 characters.")
    row = BillingProcessorSecret(
        app_id=app_id,
        processor=processor,
        secret_encrypted=box.seal(secret.strip()),
        hint=secret.strip()[-4:],
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        app_id=app_id,
        actor=actor,
        action="secret.add",
        target_type="processor_secret",
        target_id=str(row.id),
        details={"processor": processor, "hint": f"…{row.hint}"},
    )
    _SECRETS.clear()
    return row


def list_secrets(session: Session, app_id: str | None = None) -> list[BillingProcessorSecret]:
    """Secrets (never their values), newest first."""
    query = select(BillingProcessorSecret)
    if app_id:
        query = query.where(BillingProcessorSecret.app_id == app_id)
    return list(session.scalars(query.order_by(BillingProcessorSecret.created_at.desc())))


def retire_secret(
    session: Session, secret_id: str, *, actor: str = "cli"
) -> BillingProcessorSecret:
    """Stop accepting signatures made with a secret."""
    try:
        row = session.get(BillingProcessorSecret, uuid.UUID(secret_id))
    except ValueError:
        row = None
    if row is None:
        raise NotFound(
            f"no signing secret {secret_id!r}.", "List them with `tenantry billing secrets list`."
        )
    if row.retired_at is None:
        row.retired_at = utcnow()
        audit.record(
            session,
            app_id=row.app_id,
            actor=actor,
            action="secret.retire",
            target_type="processor_secret",
            target_id=str(row.id),
            details={"processor": row.processor, "hint": f"…{row.hint}"},
        )
    _SECRETS.clear()
    return row


class _SecretCache:
    """Decrypted active secrets per (app, processor) for a few seconds: ingestion is hot."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def get(
        self, session: Session | Connection, box: SecretBox, app_id: str, processor: str
    ) -> list[str]:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get((app_id, processor))
            if hit is not None and hit[0] > now:
                return hit[1]
        rows = session.scalars(
            select(BillingProcessorSecret.secret_encrypted).where(
                BillingProcessorSecret.app_id == app_id,
                BillingProcessorSecret.processor == processor,
                BillingProcessorSecret.retired_at.is_(None),
            )
        )
        secrets = [box.open(token) for token in rows]
        with self._lock:
            self._entries[(app_id, processor)] = (now + SECRET_CACHE_S, secrets)
        return secrets

    def peek(self, app_id: str, processor: str) -> list[str] | None:
        with self._lock:
            hit = self._entries.get((app_id, processor))
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_SECRETS = _SecretCache()


# --------------------------------------------------------------------------- ingestion


@dataclass(frozen=True)
class Ingested:
    """The stored event and whether this delivery was a duplicate."""

    id: uuid.UUID
    event_id: str
    duplicate: bool
    status: str


@dataclass(frozen=True)
class Delivery:
    """A verified delivery, ready to be stored."""

    id: uuid.UUID
    app_id: str
    processor: str
    event_id: str
    event_type: str
    payload: str

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes an event unique: the same event delivered to two apps is two events."""
        return (self.app_id, self.processor, self.event_id)

    def values(self) -> dict[str, object]:
        """The row to insert."""
        return {
            "id": self.id,
            "app_id": self.app_id,
            "processor": self.processor,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "payload": self.payload,
            "status": W.RECEIVED,
            "attempts": 0,
            "received_at": utcnow(),
        }


def app_secrets(
    session: Session | Connection, box: SecretBox, app_id: str, processor: str
) -> list[str]:
    """The app's active signing secrets at ``processor`` (cached for a few seconds).

    Raises :class:`InvalidInput` for a malformed app id before it reaches a query (the
    path of a delivery is anyone's to choose: PostgreSQL refuses a NUL in it with a 500)."""
    validation.app_id(app_id)
    secrets = _SECRETS.get(session, box, app_id, processor)
    session.rollback()  # end the read: an insert afterwards then waits for the write lock
    return secrets


def cached_secrets(app_id: str, processor: str) -> list[str] | None:
    """The cached secrets, if fresh; None means: load them with :func:`app_secrets`."""
    return _SECRETS.peek(app_id, processor)


def check_delivery(
    adapter: Processor, app_id: str, body: bytes, signature: str | None, secrets: list[str]
) -> Delivery:
    """Check a delivery's signature and shape (no I/O). Raises :class:`Unauthorized` for a
    bad signature and :class:`MalformedPayload` for a body the adapter cannot read."""
    validation.app_id(app_id)
    if not secrets:
        raise InvalidInput(
            f"no active {adapter.name} signing secret for app {app_id!r}.",
            f"Add one: tenantry billing secrets add {app_id} --processor {adapter.name} --secret …",
        )
    try:
        adapter.verify(body, signature, secrets)
    except SignatureError as bad:
        raise Unauthorized(f"webhook signature refused: {bad.reason}.") from None
    try:
        # Parsed here, not only when applied: what the adapter cannot read is refused now
        # rather than stored, answered 2xx and then failing on every retry.
        event = adapter.parse(body)
    except MalformedEvent as bad:
        raise MalformedPayload(
            f"the body is not a {adapter.name} event tenantry can read: {bad}.",
            f"Send events as {adapter.name} does; that field is missing, of the wrong type "
            "or out of range.",
        ) from None
    payload = body.decode("utf-8")  # the adapter read it as UTF-8
    return Delivery(uuid.uuid4(), app_id, adapter.name, event.event_id, event.type, payload)


def _insert_statement(conn: Connection) -> Any:
    """INSERT that skips an event stored already, built once per dialect so the compiled
    form is cached; RETURNING the new ids where the database has it."""
    dialect = conn.dialect
    stmt = _INSERTS.get(dialect.name)
    if stmt is None:
        if dialect.name == "postgresql":
            stmt = pg_insert(BillingWebhook).on_conflict_do_nothing(
                index_elements=["app_id", "processor", "event_id"]
            )
        elif dialect.name == "sqlite":
            stmt = sqlite_insert(BillingWebhook).on_conflict_do_nothing()
        else:
            stmt = insert(BillingWebhook).prefix_with("IGNORE")
        _INSERTS[dialect.name] = stmt
    return stmt.returning(BillingWebhook.id) if dialect.insert_returning else stmt


_INSERTS: dict[str, Any] = {}


def store_deliveries(conn: Connection, deliveries: list[Delivery]) -> list[Ingested]:
    """Insert deliveries in one statement, skipping events stored already.

    The caller commits, and answers 2xx only after its commit: what was answered is stored. Each
    result says whether that delivery was new or a duplicate (of an earlier delivery, or of
    another in the same batch).
    """
    if not deliveries:
        return []
    # executemany of one cached statement (SQLAlchemy sends it as multi-row VALUES): a
    # multi-row .values() would be compiled again for every batch size.
    done = conn.execute(_insert_statement(conn), [d.values() for d in deliveries])
    inserted = set(done.scalars()) if done.returns_rows else set()
    found: dict[tuple[str, str, str], tuple[uuid.UUID, str]] = {
        d.key: (d.id, W.RECEIVED) for d in deliveries if d.id in inserted
    }
    # Only duplicates (or every row where the database cannot say what it inserted) are
    # read back, for the id and status of the row that was there first.
    missing = [d for d in deliveries if d.key not in found]
    for app_id, processor in {(d.app_id, d.processor) for d in missing}:
        ids = [d.event_id for d in missing if (d.app_id, d.processor) == (app_id, processor)]
        for row in conn.execute(
            select(BillingWebhook.id, BillingWebhook.event_id, BillingWebhook.status).where(
                BillingWebhook.app_id == app_id,
                BillingWebhook.processor == processor,
                BillingWebhook.event_id.in_(ids),
            )
        ):
            found[(app_id, processor, row.event_id)] = (row.id, row.status)
    results = []
    for d in deliveries:
        stored_id, status = found[d.key]
        results.append(Ingested(stored_id, d.event_id, stored_id != d.id, status))
    return results


def ingest(
    session: Session | Connection,
    box: SecretBox,
    *,
    processor: str,
    app_id: str,
    body: bytes,
    signature: str | None,
) -> Ingested:
    """Verify and store one delivery; the caller commits, then answers 2xx.

    A second delivery of the same event to the same app (app + processor + event id) stores
    nothing and returns the first row. ``session`` may be a plain Core connection.
    """
    adapter = processor_named(processor)
    validation.app_id(app_id)
    secrets = app_secrets(session, box, app_id, adapter.name)
    delivery = check_delivery(adapter, app_id, body, signature, secrets)
    conn = session if isinstance(session, Connection) else session.connection()
    return store_deliveries(conn, [delivery])[0]


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
