"""Taking a webhook delivery in: check its signature and shape, then store it once (unique on
app + processor + event id) in ``billing_webhooks``, the queue that
:mod:`tenantry.services.billing.webhooks` processes. Nothing is applied here, so answering is
fast and what was answered 2xx is stored."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from tenantry.billing.processors.base import MalformedEvent, Processor, SignatureError
from tenantry.crypto import SecretBox
from tenantry.db.billing.models import BillingWebhook, WebhookStatus
from tenantry.db.types import utcnow
from tenantry.errors import InvalidInput, MalformedPayload, Unauthorized
from tenantry.services.billing import validation
from tenantry.services.billing.webhook_secrets import app_secrets, processor_named

W = WebhookStatus


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
