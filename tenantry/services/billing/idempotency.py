"""Idempotency keys: a retried POST gets the first response, never a second effect.

A key is bound to its request (method, path and body hashed): the same key with another
body is a conflict. Keys are kept :data:`KEEP` (at least 24 h). A key whose first request
is still running is a conflict too; one abandoned mid-way (the process died) is released
after :data:`ABANDONED`. These functions work on the caller's session; the transactions
(a reservation is committed before the request runs) are :mod:`tenantry.operations.idempotency`'s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tenantry.db.billing.models import BillingIdempotencyKey
from tenantry.db.types import utcnow
from tenantry.errors import Conflict, InvalidInput

KEEP = timedelta(hours=24)
ABANDONED = timedelta(seconds=60)
#: What a client sending a key whose first request is still running waits before retrying.
IN_PROGRESS_RETRY_AFTER_S = 1


def request_hash(method: str, path: str, body: bytes) -> str:
    """What a key is bound to."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


@dataclass(frozen=True)
class Replay:
    """The stored first response."""

    status_code: int
    body: str


def check_key(key: str) -> str:
    """``key`` if it can be an Idempotency-Key; :class:`InvalidInput` otherwise."""
    if not key or len(key) > 255 or not key.isprintable():
        raise InvalidInput("an Idempotency-Key must be 1 to 255 printable characters.")
    return key


def reserve(session: Session, app_id: str, key: str, fingerprint: str) -> None:
    """Insert the reservation of ``key`` for this request (flushed, not committed).

    Raises :class:`~sqlalchemy.exc.IntegrityError` when the key is taken: the caller's
    transaction is then over, and :func:`first_request` (in a new one) says what to do.
    """
    session.add(
        BillingIdempotencyKey(
            app_id=app_id, key=check_key(key), request_hash=fingerprint, expires_at=utcnow() + KEEP
        )
    )
    session.flush()


def first_request(session: Session, app_id: str, key: str, fingerprint: str) -> Replay | None:
    """The stored first response of a taken ``key`` to replay, or ``None`` when the key is free
    again (purged meanwhile, or abandoned: its reservation is deleted here).

    Raises :class:`Conflict` when the key was used with another request, or its first
    request is still in flight.
    """
    first = session.scalar(
        select(BillingIdempotencyKey).where(
            BillingIdempotencyKey.app_id == app_id, BillingIdempotencyKey.key == key
        )
    )
    if first is None:
        return None
    if first.request_hash != fingerprint:
        raise Conflict(
            "this Idempotency-Key was used with a different request.",
            "Use a new key for a new request.",
        )
    if first.status_code is None:
        if utcnow() - first.created_at > ABANDONED:
            session.delete(first)
            session.flush()
            return None
        raise Conflict(
            "a request with this Idempotency-Key is still in progress.",
            "Send it again after the Retry-After seconds: you then get the first response.",
            retry_after=IN_PROGRESS_RETRY_AFTER_S,
        )
    return Replay(first.status_code, first.response_body or "")


def finish(session: Session, app_id: str, key: str, status_code: int, body: str) -> None:
    """Store the response of the request that reserved ``key``; a server error releases the
    key instead, so the client may retry."""
    row = session.scalar(
        select(BillingIdempotencyKey).where(
            BillingIdempotencyKey.app_id == app_id, BillingIdempotencyKey.key == key
        )
    )
    if row is None:
        return
    if status_code >= 500:
        session.delete(row)
    else:
        row.status_code, row.response_body = status_code, body
    session.flush()


def purge_expired(session: Session) -> int:
    """Delete keys past their keeping time; returns how many."""
    result = session.execute(
        delete(BillingIdempotencyKey).where(BillingIdempotencyKey.expires_at < utcnow())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
