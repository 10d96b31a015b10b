"""Idempotency keys as transactions: a key is reserved, and its first response stored, each in
a short transaction of its own on the billing database.

The reservation must be committed before the request runs: that is what makes a second
request with the same key see it (409 while the first runs, a replay once it answered).
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tenantry.errors import Conflict
from tenantry.services.billing import idempotency
from tenantry.services.billing.idempotency import Replay

#: A key freed between two attempts (purged, or released as abandoned) is tried again; more
#: than this many times in a row means something else keeps taking it.
ATTEMPTS = 5


def reserve(
    sessions: sessionmaker[Session], app_id: str, key: str, fingerprint: str
) -> Replay | None:
    """Reserve ``key`` for this request (committed), or return the first response to replay.

    Raises :class:`~tenantry.errors.Conflict` when the key was used with another request, or
    its first request is still in flight.
    """
    idempotency.check_key(key)
    for _ in range(ATTEMPTS):
        try:
            with sessions.begin() as session:
                idempotency.reserve(session, app_id, key, fingerprint)
            return None
        except IntegrityError:
            pass  # taken: look at the first request in a transaction of its own
        with sessions.begin() as session:
            replay = idempotency.first_request(session, app_id, key, fingerprint)
        if replay is not None:
            return replay
    raise Conflict(
        "this Idempotency-Key was released and taken again by other requests meanwhile.",
        "Send it again after the Retry-After seconds: you then get the first response.",
        retry_after=idempotency.IN_PROGRESS_RETRY_AFTER_S,
    )


def record(
    sessions: sessionmaker[Session], app_id: str, key: str, status_code: int, body: str
) -> None:
    """Store the response of the request that reserved ``key`` (a 5xx releases the key)."""
    with sessions.begin() as session:
        idempotency.finish(session, app_id, key, status_code, body)


def purge_expired(sessions: sessionmaker[Session]) -> int:
    """Delete keys past their keeping time in one transaction; returns how many."""
    with sessions.begin() as session:
        return idempotency.purge_expired(session)
