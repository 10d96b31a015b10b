"""Authenticating an API request (a key or a user's session cookie), and signing in and out.

A lookup runs in a read transaction of its own and the bookkeeping (a key's last use, a
session's last request, at most once a minute) in a short write transaction of its own, so the
route's master session starts clean and a request that only reads never holds a write lock.
Every failed authentication is written to the audit log (who tried, from which address) in a
transaction of its own, never with the secret that was presented.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tenantry.db.master.models import User
from tenantry.db.types import utcnow
from tenantry.errors import TooManyAttempts, Unauthorized
from tenantry.services import audit, login_sessions, users
from tenantry.services.apikeys import authenticate, prefix_of, principal_of, record_use
from tenantry.services.permissions import Principal

#: What every failed login answers, whatever failed (unknown email, wrong password, disabled
#: user): a caller cannot learn which emails have users.
LOGIN_REFUSED = "wrong email or password."


def _failed(
    session: Session, *, actor: str, action: str, ip_address: str | None, reason: str
) -> None:
    entry = audit.record(
        session,
        actor=actor[:128],  # the email tried may be anything up to 255 characters
        action=action,
        target_type="authentication",
        details={"reason": reason, "ip_address": ip_address},
    )
    entry.ip_address = ip_address


def authenticate_request(
    reads: sessionmaker[Session],
    writes: sessionmaker[Session],
    presented: str,
    *,
    ip_address: str | None = None,
) -> Principal:
    """The principal of the API key ``presented``, its use recorded.

    Raises :class:`~tenantry.errors.Unauthorized` for a malformed, unknown, revoked or
    expired key, and audits the failure (naming the key's prefix, never its secret).
    """
    try:
        with reads() as session:
            key = authenticate(session, presented)
    except Unauthorized as exc:
        prefix = prefix_of(presented)
        with writes.begin() as session:
            _failed(
                session,
                actor=f"key:{prefix}" if prefix else "anonymous",
                action="auth.key_failed",
                ip_address=ip_address,
                reason=exc.message,
            )
        raise
    with writes.begin() as session:
        record_use(session, key)
    return principal_of(key)


def authenticate_session(
    reads: sessionmaker[Session],
    writes: sessionmaker[Session],
    token: str,
    *,
    ip_address: str | None = None,
) -> Principal:
    """The principal of the signed-in user whose session cookie is ``token``, the request
    recorded on the session; Unauthorized (audited) for an unknown or ended session."""
    try:
        with reads() as session:
            row, user = login_sessions.resolve(session, token)
    except Unauthorized as exc:
        with writes.begin() as session:
            _failed(
                session,
                actor="anonymous",
                action="auth.session_failed",
                ip_address=ip_address,
                reason=exc.message,
            )
        raise
    with writes.begin() as session:
        login_sessions.touch(session, row)
    return users.principal_of(user)


@dataclass(frozen=True)
class SignedIn:
    """A new session: its cookie ``token`` and ``csrf`` token (shown once), and its user."""

    token: str
    csrf: str
    principal: Principal
    name: str


def login(
    writes: sessionmaker[Session],
    email: str,
    password: str,
    *,
    ip_address: str,
    user_agent: str | None,
) -> SignedIn:
    """Sign a user in; the same Unauthorized for an unknown email, a wrong password and a
    disabled user (each audited as ``auth.login_failed`` with who tried and from where), and
    TooManyAttempts (also audited) after repeated failures."""
    address = email.strip().lower()[:255]
    with writes.begin() as session:
        try:
            login_sessions.check_attempts(session, address, ip_address)
        except TooManyAttempts as exc:
            _failed(
                session,
                actor=f"user:{address}",
                action="auth.login_failed",
                ip_address=ip_address,
                reason="too many failed logins",
            )
            refused: Exception = exc
        else:
            user = session.scalar(select(User).where(User.email == address))
            reason = None
            if user is None:
                users.burn_time(password)
                reason = "unknown email"
            elif not user.is_active:
                users.burn_time(password)
                reason = "user disabled"
            elif not users.verify_password(user, password):
                reason = "wrong password"
            if reason is not None or user is None:
                login_sessions.record_failure(session, address, ip_address)
                _failed(
                    session,
                    actor=f"user:{address}",
                    action="auth.login_failed",
                    ip_address=ip_address,
                    reason=reason or "unknown email",
                )
                refused = Unauthorized(LOGIN_REFUSED, "Check the email and password.")
            else:
                login_sessions.clear_failures(session, address, ip_address)
                user.last_login_at = utcnow()
                new = login_sessions.start(
                    session, user, ip_address=ip_address, user_agent=user_agent
                )
                principal = users.principal_of(user)
                entry = audit.record(
                    session,
                    actor=principal.actor,
                    action="auth.login",
                    target_type="user",
                    target_id=user.email,
                    details={"ip_address": ip_address},
                )
                entry.ip_address = ip_address
                return SignedIn(new.token, new.csrf, principal, user.name)
    # The failure is committed (counted and audited) before it is answered.
    raise refused


def logout(writes: sessionmaker[Session], token: str, principal: Principal) -> None:
    """End the session ``token`` stands for (audited)."""
    with writes.begin() as session:
        if login_sessions.end(session, token):
            audit.record(
                session,
                actor=principal.actor,
                action="auth.logout",
                target_type="user",
                target_id=principal.name,
            )
