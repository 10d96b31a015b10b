"""Signing in over HTTP: cookies, the same 401 for every failure, audits, the slow-down,
CSRF, logout and the session's end.

Proves that a login sets an HttpOnly, SameSite=Strict session cookie (Secure unless over
plain HTTP to a loopback address) whose token master keeps only as a hash; that a wrong
password, an unknown email and a disabled user get byte-identical 401s, each audited with
who tried and from where, never the password, as are failed API keys (never the secret);
that five failures for an email from one address answer 429 with Retry-After even for the
right password, while another email from there still signs in; that a cookie-authenticated
write without the CSRF header is refused and changes nothing; and that a session ends at
logout, after the idle timeout, and when its user is disabled.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

from sqlalchemy import func, select, update

from tenantry.db.master.models import AuditLog, LoginFailure, Store, User, UserRole, UserSession
from tenantry.db.types import utcnow
from tenantry.services import users
from tests.api.conftest import Api
from tests.api.users_helpers import PASSWORD, add_user, login


def _audits(api: Api, action: str) -> list[AuditLog]:
    with api.platform.sessions() as session:
        return list(
            session.scalars(
                select(AuditLog).where(AuditLog.action == action).order_by(AuditLog.created_at)
            )
        )


def test_a_login_sets_a_strict_http_only_cookie_whose_token_master_only_hashes(api: Api) -> None:
    add_user(api, "Owner@Example.com", UserRole.OWNER)
    signed = login(api, "owner@example.com")
    cookie = signed.cookies["tenantry_session"]
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "strict"
    assert cookie["secure"] is True  # http://testserver is not a loopback address
    assert signed.cookies["tenantry_csrf"]["httponly"] == ""  # the console's script reads it
    with api.platform.sessions() as session:
        stored = session.scalars(select(UserSession.token_hash)).all()
        assert stored == [hashlib.sha256(signed.token.encode()).hexdigest()]
        user = session.scalar(select(User))
        assert user is not None
        assert user.last_login_at is not None
        assert user.password_hash is not None
        assert user.password_hash.startswith("$argon2id$")
    me = api.client.get("/auth/me", headers=signed.headers)
    assert me.status_code == 200, me.text
    assert me.json() == {
        "kind": "user",
        "name": "owner@example.com",
        "role": "owner",
        "read_only": False,
        "actor": "user:owner@example.com",
    }
    # On the developer's own machine over plain HTTP the cookie cannot be Secure.
    local = login(api, "owner@example.com", url="http://127.0.0.1/auth/login")
    assert local.cookies["tenantry_session"]["secure"] == ""
    assert _audits(api, "auth.login")[0].ip_address == "testclient"


def test_every_failed_login_gets_the_same_401_and_is_audited_without_the_password(
    api: Api,
) -> None:
    add_user(api, "op@example.com", UserRole.OPERATOR)
    add_user(api, "gone@example.com", UserRole.VIEWER)
    with api.platform.writer_sessions.begin() as session:
        users.set_active(session, "gone@example.com", False, actor="cli:test")
    answers = [
        api.client.post("/auth/login", json={"email": email, "password": password})
        for email, password in (
            ("op@example.com", "not the right password"),
            ("nobody@example.com", "not the right password"),
            ("gone@example.com", PASSWORD),
        )
    ]
    assert [a.status_code for a in answers] == [401, 401, 401]
    assert len({a.content for a in answers}) == 1
    assert not any("set-cookie" in a.headers for a in answers)
    failed = _audits(api, "auth.login_failed")
    assert [(a.actor, a.ip_address) for a in failed] == [
        ("user:op@example.com", "testclient"),
        ("user:nobody@example.com", "testclient"),
        ("user:gone@example.com", "testclient"),
    ]
    assert [a.details["reason"] for a in failed] == [
        "wrong password",
        "unknown email",
        "user disabled",
    ]
    dumped = json.dumps([a.details for a in failed])
    assert "not the right password" not in dumped
    assert PASSWORD not in dumped
    with api.platform.sessions() as session:
        assert session.scalar(select(func.count()).select_from(UserSession)) == 0

    # A failed API key is audited too, by its prefix, never its secret.
    refused = api.client.get("/stores", headers={"Authorization": "Bearer tnt_abc123_s3cr3t"})
    assert refused.status_code == 401
    (key_failure,) = _audits(api, "auth.key_failed")
    assert key_failure.actor == "key:abc123"
    assert key_failure.ip_address == "testclient"
    assert "s3cr3t" not in json.dumps(key_failure.details)


def test_repeated_failures_are_refused_for_a_while_whatever_the_password(api: Api) -> None:
    add_user(api, "target@example.com", UserRole.OWNER)
    add_user(api, "other@example.com", UserRole.VIEWER)
    for _ in range(5):
        wrong = api.client.post(
            "/auth/login", json={"email": "target@example.com", "password": "guess-guess-guess"}
        )
        assert wrong.status_code == 401
    locked = api.client.post(
        "/auth/login", json={"email": "target@example.com", "password": PASSWORD}
    )
    assert locked.status_code == 429, locked.text
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert "too many failed logins" in locked.json()["error"]["message"]
    assert "set-cookie" not in locked.headers
    # Only that email from that address is slowed down.
    login(api, "other@example.com")
    # Once the window has passed, the right password works again.
    with api.platform.writer_sessions.begin() as session:
        session.execute(update(LoginFailure).values(created_at=utcnow() - timedelta(minutes=16)))
    login(api, "target@example.com")


def test_a_cookie_write_needs_the_csrf_token(api: Api) -> None:
    add_user(api, "op@example.com", UserRole.OPERATOR)
    signed = login(api, "op@example.com")
    body = {"slug": "csrf-shop", "name": "Shop"}
    forged = api.client.post("/stores", json=body, headers=signed.cookie_only)
    assert forged.status_code == 403, forged.text
    assert "CSRF" in forged.json()["error"]["message"]
    wrong = api.client.post(
        "/stores", json=body, headers={**signed.cookie_only, "X-CSRF-Token": "0" * 64}
    )
    assert wrong.status_code == 403
    with api.platform.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Store)) == 0
    made = api.client.post("/stores", json=body, headers=signed.headers)
    assert made.status_code == 201, made.text
    # Reads need no CSRF token; the store's audit entry names the user.
    assert api.client.get("/stores", headers=signed.cookie_only).status_code == 200
    (created,) = _audits(api, "store.create")
    assert created.actor == "user:op@example.com"


def test_a_session_ends_at_logout_when_idle_and_when_its_user_is_disabled(api: Api) -> None:
    add_user(api, "op@example.com", UserRole.OPERATOR)
    first = login(api, "op@example.com")
    out = api.client.post("/auth/logout", headers=first.headers)
    assert out.status_code == 204, out.text
    assert api.client.get("/auth/me", headers=first.headers).status_code == 401

    idle = login(api, "op@example.com")
    with api.platform.writer_sessions.begin() as session:
        session.execute(update(UserSession).values(last_seen_at=utcnow() - timedelta(minutes=31)))
    assert api.client.get("/auth/me", headers=idle.headers).status_code == 401

    disabled = login(api, "op@example.com")
    assert api.client.get("/auth/me", headers=disabled.headers).status_code == 200
    with api.platform.writer_sessions.begin() as session:
        users.set_active(session, "op@example.com", False, actor="cli:test")
    assert api.client.get("/auth/me", headers=disabled.headers).status_code == 401
    assert len(_audits(api, "auth.session_failed")) == 3
