"""Platform users for API tests: added through the service, signed in over HTTP."""

from __future__ import annotations

from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

from tenantry.db.master.models import UserRole
from tenantry.services import users
from tests.api.conftest import Api

PASSWORD = "correct horse battery staple"


def add_user(api: Api, email: str, role: UserRole, *, password: str = PASSWORD) -> None:
    """Add a user straight through the service (as `tenantry users add` would)."""
    with api.platform.writer_sessions.begin() as session:
        users.add_user(session, email=email, password=password, role=role, actor="cli:test")


@dataclass
class SignedIn:
    """A signed-in user's cookies as the login response set them."""

    token: str
    csrf: str
    cookies: SimpleCookie

    @property
    def headers(self) -> dict[str, str]:
        """What a browser sends: the cookies, and the CSRF token the console's script
        copies from its cookie into the header."""
        return {
            "Cookie": f"tenantry_session={self.token}; tenantry_csrf={self.csrf}",
            "X-CSRF-Token": self.csrf,
        }

    @property
    def cookie_only(self) -> dict[str, str]:
        """The cookies a cross-site form post would carry, without the header."""
        return {"Cookie": f"tenantry_session={self.token}; tenantry_csrf={self.csrf}"}


def login(api: Api, email: str, password: str = PASSWORD, **request: Any) -> SignedIn:
    """Sign in over HTTP; the cookies are read from Set-Cookie (the client's jar is not used:
    it would not send Secure cookies back over http://testserver)."""
    answer = api.client.post(
        request.pop("url", "/auth/login"), json={"email": email, "password": password}, **request
    )
    assert answer.status_code == 200, answer.text
    jar: SimpleCookie = SimpleCookie()
    for header in answer.headers.get_list("set-cookie"):
        jar.load(header)
    api.client.cookies.clear()
    return SignedIn(jar["tenantry_session"].value, jar["tenantry_csrf"].value, jar)
