"""The signing secrets webhook deliveries are verified with: per app and processor, several
active at once (to rotate), sealed in the billing database, and cached decrypted for
:data:`SECRET_CACHE_S` seconds per process because every delivery reads them."""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from tenantry.billing.processors import PROCESSORS, get_processor
from tenantry.billing.processors.base import Processor
from tenantry.crypto import SecretBox
from tenantry.db.billing.models import BillingProcessorSecret
from tenantry.db.types import utcnow
from tenantry.errors import InvalidInput, NotFound
from tenantry.services.billing import audit, validation

#: How long a process serves the decrypted secrets before reading them again.
SECRET_CACHE_S = 5.0


def processor_named(name: str) -> Processor:
    """The adapter called ``name``, or :class:`NotFound` listing the known ones."""
    try:
        return get_processor(name)
    except KeyError:
        raise NotFound(
            f"unknown payment processor {name!r}.", f"Use one of: {', '.join(sorted(PROCESSORS))}."
        ) from None


def add_secret(
    session: Session,
    box: SecretBox,
    app_id: str,
    processor: str,
    secret: str,
    *,
    actor: str,
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


def retire_secret(session: Session, secret_id: str, *, actor: str) -> BillingProcessorSecret:
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
