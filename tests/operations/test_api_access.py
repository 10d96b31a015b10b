"""Signing in, on every backend: a session for the right password, the same refusal and an
audit entry for each failure (even for an email longer than the audit log's actor column),
the slow-down after five failures, and a session whose principal carries the user's role."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tenantry.db.master.models import AuditLog, UserRole
from tenantry.errors import TooManyAttempts, Unauthorized
from tenantry.operations import api_access
from tenantry.runtime import Platform
from tenantry.services import users
from tests.platform_fixtures import backend_platform

__all__ = ["backend_platform"]

PASSWORD = "a passphrase long enough"
LONG_EMAIL = "v" * 200 + "@example.com"


def test_login_failures_slow_down_and_a_session_carries_the_role(
    backend_platform: Platform,
) -> None:
    platform = backend_platform
    writes = platform.writer_sessions
    with writes.begin() as session:
        users.add_user(
            session, email=LONG_EMAIL, password=PASSWORD, role=UserRole.VIEWER, actor="cli:test"
        )
    signed = api_access.login(writes, LONG_EMAIL, PASSWORD, ip_address="10.1.1.1", user_agent=None)
    principal = api_access.authenticate_session(platform.sessions, writes, signed.token)
    assert principal.read_only is True
    assert principal.role == "viewer"
    assert principal.name == LONG_EMAIL
    for _ in range(5):
        with pytest.raises(Unauthorized, match="wrong email or password"):
            api_access.login(writes, LONG_EMAIL, "wrong", ip_address="10.1.1.1", user_agent=None)
    with pytest.raises(TooManyAttempts) as slowed:
        api_access.login(writes, LONG_EMAIL, PASSWORD, ip_address="10.1.1.1", user_agent=None)
    assert 0 < slowed.value.retry_after <= 900
    # Another address is not slowed down for this email.
    api_access.login(writes, LONG_EMAIL, PASSWORD, ip_address="10.2.2.2", user_agent=None)
    with platform.sessions() as session:
        failed = session.scalars(
            select(AuditLog).where(AuditLog.action == "auth.login_failed")
        ).all()
    assert len(failed) == 6
    assert {e.ip_address for e in failed} == {"10.1.1.1"}
    assert all(e.actor.startswith("user:vvvv") for e in failed)
    reasons = sorted(e.details["reason"] for e in failed)
    assert reasons == ["too many failed logins"] + ["wrong password"] * 5
    with pytest.raises(Unauthorized):
        api_access.authenticate_session(platform.sessions, writes, signed.token + "x")
