"""Who uses the console: the session cookie of a signed-in platform user, the CSRF check on
every POST, and the sign-in and sign-out pages.

The session is the API's own (``POST /auth/login`` and this page set the same cookies), read
through :mod:`tenantry.operations.api_access`, and the principal is recorded for the service
layer's read-only guard exactly as the API records it: a viewer's POST is refused by the same
mechanism that refuses a read-only key.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tenantry.api.deps import (
    CSRF_COOKIE,
    CSRF_HEADER,
    SESSION_COOKIE,
    PlatformDep,
    client_ip,
)
from tenantry.api.routes.auth import cookies_secure
from tenantry.console.templating import render
from tenantry.errors import Forbidden, InvalidInput, TenantryError, Unauthorized
from tenantry.operations import api_access
from tenantry.services.login_sessions import LIFETIME, csrf_token
from tenantry.services.permissions import Principal, set_principal

router = APIRouter(prefix="/console", include_in_schema=False)

#: The form field that carries the CSRF token of a POST (htmx sends X-CSRF-Token instead).
CSRF_FIELD = "csrf_token"
#: Before sign-in there is no session: the login form is protected by a random token kept in
#: this cookie and echoed in the form (double submit).
LOGIN_CSRF_COOKIE = "tenantry_login_csrf"
#: A form body larger than this is refused (the console's forms are a few short fields).
MAX_FORM_BYTES = 16_384
HOME = "/console/stores"


class NeedsLogin(Exception):
    """The request has no live session: the console answers with the sign-in page."""


@dataclass(frozen=True)
class ConsoleUser:
    """The signed-in user of a console request, and the CSRF token of their session."""

    principal: Principal
    csrf: str


def console_user(request: Request, platform: PlatformDep) -> ConsoleUser:
    """The signed-in user of the session cookie, recorded for the read-only guard; a request
    without a live session is sent to the sign-in page."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise NeedsLogin
    sessions = platform.sessions if request.method == "GET" else platform.writer_sessions
    try:
        principal = api_access.authenticate_session(
            sessions, platform.writer_sessions, cookie, ip_address=client_ip(request)
        )
    except Unauthorized:
        raise NeedsLogin from None
    set_principal(principal)
    user = ConsoleUser(principal, csrf_token(cookie))
    request.state.console_user = user
    return user


UserDep = Annotated[ConsoleUser, Depends(console_user)]


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form body (the last value of a repeated field)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidInput(
            "the console's forms are sent URL-encoded.", "Submit the form from the page."
        )
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise InvalidInput(f"the form is larger than {MAX_FORM_BYTES} bytes.", "Send less.")
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput(
            "the form could not be read.", "Submit the form from the page."
        ) from None
    return {name: values[-1] for name, values in parsed.items()}


FormDep = Annotated[dict[str, str], Depends(form_fields)]


def checked_user(request: Request, user: UserDep, form: FormDep) -> ConsoleUser:
    """The signed-in user of a POST that carries their session's CSRF token (the form's
    hidden field, or htmx's X-CSRF-Token header); anything else is refused with a 403."""
    sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
    if not hmac.compare_digest(sent, user.csrf):
        raise Forbidden(
            "this form is missing the session's CSRF token (or it is stale).",
            "Reload the page and submit the form again.",
        )
    return user


WriterDep = Annotated[ConsoleUser, Depends(checked_user)]


def safe_next(target: str | None) -> str:
    """Where to go after signing in: only a console path, never another site."""
    if target and target.startswith("/console/") and not target.startswith("/console//"):
        return target
    return HOME


def login_redirect(request: Request) -> Response:
    """The answer to a request without a session: the sign-in page (htmx: a full-page
    redirect, since a fragment cannot hold it)."""
    target = f"/console/login?next={quote(request.url.path)}"
    if request.headers.get("HX-Request"):
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def _login_page(
    request: Request, *, next_path: str, error: TenantryError | None = None, status: int = 200
) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {"login_csrf": token, "next": next_path, "error": error},
        status=status,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        secure=cookies_secure(request),
        samesite="strict",
        path="/console/login",
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    """The sign-in form."""
    return _login_page(request, next_path=safe_next(next))


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, form: FormDep, platform: PlatformDep) -> Response:
    """Sign in with email and password: sets the session cookies, then goes on."""
    next_path = safe_next(form.get("next"))
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD, "")
    if not expected or not hmac.compare_digest(sent, expected):
        refused = Forbidden(
            "the sign-in form is stale or was not sent from this page.", "Sign in again."
        )
        return _login_page(request, next_path=next_path, error=refused)
    try:
        signed = api_access.login(
            platform.writer_sessions,
            form.get("email", ""),
            form.get("password", ""),
            ip_address=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except Unauthorized as exc:
        return _login_page(request, next_path=next_path, error=exc)
    except TenantryError as exc:  # too many attempts
        refused_page = _login_page(request, next_path=next_path, error=exc)
        refused_page.headers["Retry-After"] = str(getattr(exc, "retry_after", 60))
        return refused_page
    response = RedirectResponse(next_path, status_code=303)
    secure = cookies_secure(request)
    age = int(LIFETIME.total_seconds())
    response.set_cookie(
        SESSION_COOKIE, signed.token, max_age=age, httponly=True, secure=secure, samesite="strict"
    )
    response.set_cookie(
        CSRF_COOKIE, signed.csrf, max_age=age, httponly=False, secure=secure, samesite="strict"
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/console/login")
    return response


@router.post("/logout")
def logout(request: Request, user: WriterDep, platform: PlatformDep) -> Response:
    """Sign out: the session ends (audited) and its cookies are removed."""
    token = request.cookies.get(SESSION_COOKIE, "")
    api_access.logout(platform.writer_sessions, token, user.principal)
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, samesite="strict", httponly=True)
    response.delete_cookie(CSRF_COOKIE, samesite="strict")
    return response
