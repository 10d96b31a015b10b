"""Signing platform users in and out (for the web console), and who a request acts as.

``POST /auth/login`` sets two cookies: ``tenantry_session`` (the session token: HttpOnly,
SameSite=Strict, Secure unless the API is reached over plain HTTP on a loopback address) and
``tenantry_csrf`` (readable by the console's script, which echoes it in ``X-CSRF-Token`` on
every request that may write).
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from tenantry.api.deps import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    KeyDep,
    PlatformDep,
    client_ip,
)
from tenantry.api.fields import RequestModel
from tenantry.api.openapi import raises
from tenantry.errors import Unauthorized
from tenantry.operations import api_access
from tenantry.services.login_sessions import LIFETIME

router = APIRouter(prefix="/auth", tags=["authentication"])


class LoginRequest(RequestModel):
    """An email and password."""

    email: str = Field(min_length=1, max_length=255)
    password: str = Field(min_length=1, max_length=1024)


class WhoAmI(BaseModel):
    """Who the request acts as."""

    kind: Literal["user", "key"]
    name: str = Field(description="The user's email, or the key's prefix.")
    role: str = Field(description="A user's role, or a key's scope.")
    read_only: bool
    actor: str = Field(description="How the audit log names this principal.")


class LoginOut(WhoAmI):
    """The signed-in user, and the CSRF token to send in X-CSRF-Token (also in a cookie)."""

    display_name: str
    csrf_token: str


def cookies_secure(request: Request) -> bool:
    """Whether the cookies must be Secure: always, except over plain HTTP to a loopback host
    (a developer's own machine), where a Secure cookie would never be sent back."""
    if request.url.scheme == "https":
        return True
    host = (request.url.hostname or "").strip("[]")
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


@router.post("/login", response_model=LoginOut)
@raises(401, 429, 503)
def login(
    body: LoginRequest, request: Request, response: Response, platform: PlatformDep
) -> LoginOut:
    """Sign in with email and password: sets the session cookie.

    A wrong password, an unknown email and a disabled user get the same 401. Five failures
    for one email from one address (or fifty from one address) within 15 minutes are answered
    429 with Retry-After until the window has passed, whatever the password.
    """
    signed = api_access.login(
        platform.writer_sessions,
        body.email,
        body.password,
        ip_address=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    secure = cookies_secure(request)
    age = int(LIFETIME.total_seconds())
    response.set_cookie(
        SESSION_COOKIE, signed.token, max_age=age, httponly=True, secure=secure, samesite="strict"
    )
    response.set_cookie(
        CSRF_COOKIE, signed.csrf, max_age=age, httponly=False, secure=secure, samesite="strict"
    )
    p = signed.principal
    return LoginOut(
        kind="user",
        name=p.name,
        role=p.role,
        read_only=p.read_only,
        actor=p.actor,
        display_name=signed.name,
        csrf_token=signed.csrf,
    )


@router.post("/logout", status_code=204)
@raises(401, 403)
def logout(request: Request, key: KeyDep, platform: PlatformDep) -> Response:
    """End the session of the cookie (sign out); needs X-CSRF-Token like every write."""
    token = request.cookies.get(SESSION_COOKIE)
    if key.kind != "user" or not token:
        raise Unauthorized("not signed in: only a session can be signed out.")
    api_access.logout(platform.writer_sessions, token, key)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, samesite="strict", httponly=True)
    response.delete_cookie(CSRF_COOKIE, samesite="strict")
    return response


@router.get("/me", response_model=WhoAmI)
def me(key: KeyDep) -> WhoAmI:
    """Who the request acts as (a signed-in user or an API key)."""
    kind: Literal["user", "key"] = "user" if key.kind == "user" else "key"
    return WhoAmI(kind=kind, name=key.name, role=key.role, read_only=key.read_only, actor=key.actor)
