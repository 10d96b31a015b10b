"""Login sessions of platform users, and the slow-down of repeated failed logins.

A session's token is 256 random bits, sent back as a cookie; master keeps only its SHA-256.
A session ends at its absolute expiry, after :data:`IDLE_TIMEOUT` without a request, at
logout, and when its user is disabled or given a new password. Its CSRF token is derived from
the session token (HMAC), so it needs no storage and is worthless without the session.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from tenantry.db.master.models import LoginFailure, User, UserSession
from tenantry.db.types import utcnow
from tenantry.errors import TooManyAttempts, Unauthorized

#: A session ends this long after login however active it is (OWASP: hours, not days).
LIFETIME = timedelta(hours=12)
#: ... and after this long without a request.
IDLE_TIMEOUT = timedelta(minutes=30)
#: A session's last request is written at most this often (a request should not mean a write).
SEEN_EVERY = timedelta(minutes=1)

#: Failed logins are counted over this window.
FAILURE_WINDOW = timedelta(minutes=15)
#: Failures for one email from one address before that pair is refused for the window ...
MAX_FAILURES_PER_EMAIL_AND_IP = 5
#: ... and failures from one address (any emails) before the address is.
MAX_FAILURES_PER_IP = 50


def token_hash(token: str) -> str:
    """What master stores of a session token (256 random bits: a fast hash is enough)."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(token: str) -> str:
    """The CSRF token of the session ``token``: the console sends it in ``X-CSRF-Token``."""
    return hmac.new(token.encode(), b"tenantry-csrf", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class NewSession:
    """A session as created: ``token`` goes in the cookie and is never stored."""

    session: UserSession
    token: str

    @property
    def csrf(self) -> str:
        """The session's CSRF token."""
        return csrf_token(self.token)


def start(
    session: Session, user: User, *, ip_address: str | None, user_agent: str | None
) -> NewSession:
    """A new session for ``user`` (whose password was checked)."""
    now = utcnow()
    token = secrets.token_urlsafe(32)
    row = UserSession(
        user_id=user.id,
        token_hash=token_hash(token),
        created_at=now,
        expires_at=now + LIFETIME,
        last_seen_at=now,
        ip_address=ip_address,
        user_agent=(user_agent or "")[:512] or None,
    )
    session.add(row)
    session.flush()
    return NewSession(row, token)


def resolve(session: Session, token: str) -> tuple[UserSession, User]:
    """The live session ``token`` stands for and its (active) user, or Unauthorized."""
    found = session.execute(
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.token_hash == token_hash(token))
    ).first()
    now = utcnow()
    if (
        found is None
        or found[0].expires_at <= now
        or found[0].last_seen_at + IDLE_TIMEOUT <= now
        or not found[1].is_active
    ):
        raise Unauthorized("not signed in, or the session has ended.", "Sign in again.")
    return found[0], found[1]


def touch(session: Session, row: UserSession) -> bool:
    """Record a request of the session (at most once a minute); whether it was due."""
    now = utcnow()
    if now - row.last_seen_at < SEEN_EVERY:
        return False
    session.execute(
        update(UserSession)
        .where(UserSession.id == row.id)
        .values(last_seen_at=now)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(row, "last_seen_at", now)
    return True


def end(session: Session, token: str) -> bool:
    """End the session ``token`` stands for; whether there was one."""
    result = session.execute(delete(UserSession).where(UserSession.token_hash == token_hash(token)))
    return bool(getattr(result, "rowcount", 0))


def check_attempts(session: Session, email: str, ip_address: str) -> None:
    """Refuse (TooManyAttempts, 429 with Retry-After) a login from an address that failed too
    often lately, for this email or for any. The same for known and unknown emails."""
    since = utcnow() - FAILURE_WINDOW
    recent = select(func.count(), func.min(LoginFailure.created_at)).where(
        LoginFailure.created_at > since, LoginFailure.ip_address == ip_address
    )
    for query, limit in (
        (recent.where(LoginFailure.email == email), MAX_FAILURES_PER_EMAIL_AND_IP),
        (recent, MAX_FAILURES_PER_IP),
    ):
        count, oldest = session.execute(query).one()
        if count >= limit:
            wait = (oldest + FAILURE_WINDOW - utcnow()).total_seconds()
            raise TooManyAttempts(
                "too many failed logins; wait before trying again.",
                "Retry after the number of seconds in the Retry-After header, or ask an "
                "owner to reset the password (`tenantry users reset-password EMAIL`).",
                retry_after=max(1, math.ceil(wait)),
            )


def record_failure(session: Session, email: str, ip_address: str) -> None:
    """Count a failed login (and forget failures older than the window)."""
    now = utcnow()
    session.execute(delete(LoginFailure).where(LoginFailure.created_at <= now - FAILURE_WINDOW))
    session.add(LoginFailure(email=email[:255], ip_address=ip_address[:45], created_at=now))


def clear_failures(session: Session, email: str, ip_address: str) -> None:
    """Forget the failures of ``email`` from ``ip_address`` (it signed in)."""
    session.execute(
        delete(LoginFailure).where(
            LoginFailure.email == email, LoginFailure.ip_address == ip_address
        )
    )
