"""Authenticating an API request: the key looked up, its last use recorded.

The lookup runs in a read transaction of its own and the last use (at most once a minute) in a
short write transaction of its own, so the route's master session starts clean and a request
that only reads never holds a write lock.
"""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from tenantry.db.master.models import ApiKey
from tenantry.services.apikeys import authenticate, record_use


def authenticate_request(
    reads: sessionmaker[Session], writes: sessionmaker[Session], presented: str
) -> ApiKey:
    """The key ``presented`` stands for (detached, its columns loaded), its use recorded.

    Raises :class:`~tenantry.errors.Unauthorized` for a malformed, unknown, revoked or
    expired key.
    """
    with reads() as session:
        key = authenticate(session, presented)
    with writes.begin() as session:
        record_use(session, key)
    return key
