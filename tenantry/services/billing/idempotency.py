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


def _row(session: Session, app_id: str, key: str) -> BillingIdempotencyKey | None:
    return session.scalar(
        select(BillingIdempotencyKey).where(
            BillingIdempotencyKey.app_id == app_id, BillingIdempotencyKey.key == key
        )
    )


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
    first = _row(session, app_id, key)
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


#: What a retry gets when the first request's effect was committed but neither its response
#: nor a staged one was kept (a route that committed without staging, then the process died).
EFFECT_WITHOUT_RESPONSE = (
    409,
    '{"error":{"type":"Conflict","message":"the first request with this Idempotency-Key took '
    'effect, but its response was not kept.","hint":"Read the resource it changed (GET) '
    'instead of sending the request again."}}',
)


def keep_with_effect(
    session: Session, app_id: str, key: str, response: tuple[int, str] | None
) -> None:
    """Store the response to replay *in the transaction that commits the request's effect*,
    so a process dying between that commit and :func:`finish` leaves a replay, not a key that
    is released later and lets a retry apply the effect twice. ``response`` is the staged
    (status, body); without one, :data:`EFFECT_WITHOUT_RESPONSE` is kept."""
    row = _row(session, app_id, key)
    if row is None:
        return
    row.status_code, row.response_body = response or EFFECT_WITHOUT_RESPONSE
    session.flush()


def finish(session: Session, app_id: str, key: str, status_code: int, body: str) -> None:
    """Store the response of the request that reserved ``key``; a server error releases the
    key instead, so the client may retry, unless the request's effect was committed (a
    response was kept with it): a retry then replays that one."""
    row = _row(session, app_id, key)
    if row is None:
        return
    if status_code < 500:
        row.status_code, row.response_body = status_code, body
    elif row.status_code is None:
        session.delete(row)
    session.flush()


def purge_expired(session: Session) -> int:
    """Delete keys past their keeping time; returns how many."""
    result = session.execute(
        delete(BillingIdempotencyKey).where(BillingIdempotencyKey.expires_at < utcnow())
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
