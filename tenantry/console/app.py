"""Mounting the console on the API's application: its pages under ``/console``, ``GET /``
sending people there, its assets under ``/console/static``, its error pages and its security
headers. The API's own routes, ``/docs`` and ``/health`` are untouched."""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantry.api.errors import error_response
from tenantry.console import auth
from tenantry.console.pages import (
    backups,
    billing,
    fleet,
    health,
    operations,
    store_detail,
    store_move,
    store_recover,
    store_restore,
    stores,
)
from tenantry.console.templating import STATIC_DIR, render

PREFIX = "/console"

#: Every console answer carries these: nothing but the console's own files may run or load
#: (no inline script or style), no page may be framed, and no URL leaks to other sites.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
        "form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_ENCODED = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]


def is_console(path: str) -> bool:
    """Whether ``path`` is the console's (its pages, assets and ``/``)."""
    return path == "/" or path == PREFIX or path.startswith(PREFIX + "/")


class ConsoleHeaders:
    """Pure ASGI middleware: the security headers on every console response, redirects and
    error pages included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_console(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                static = scope["path"].startswith(PREFIX + "/static/")
                message["headers"] = [
                    *message.get("headers", []),
                    *(h for h in _ENCODED if not (static and h[0] == b"cache-control")),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)


def _install_errors(app: FastAPI) -> None:
    """Console paths answer errors with a page (the API's message and hint, the API's
    status); every other path keeps the API's JSON error contract."""
    previous = dict(app.exception_handlers)

    async def needs_login(request: Request, exc: Exception) -> Response:
        return auth.login_redirect(request)

    async def handle(request: Request, exc: Exception) -> Response:
        if not is_console(request.url.path):
            return error_response(request, exc)
        answer = error_response(request, exc)  # the same status and words as the API
        error = json.loads(bytes(answer.body))["error"]
        if request.headers.get("HX-Request"):
            # htmx swaps only a 2xx answer (and logs any other as a console error): the
            # message takes the fragment's place, its status in the page.
            context = {"error": error, "status": answer.status_code}
            return render(request, "fragments/error.html", context)
        context = {"error": error, "status": answer.status_code}
        response = render(request, "error.html", context, status=answer.status_code)
        if "retry-after" in answer.headers:
            response.headers["Retry-After"] = answer.headers["retry-after"]
        return response

    app.add_exception_handler(auth.NeedsLogin, needs_login)
    for kind in previous:
        if kind is not auth.NeedsLogin:
            app.add_exception_handler(kind, handle)


def install(app: FastAPI) -> None:
    """Mount the console on ``app`` (after the API's error handlers are installed)."""

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        """The console's home: the stores."""
        return RedirectResponse(auth.HOME, status_code=303)

    @app.get(PREFIX, include_in_schema=False)
    def console_root() -> RedirectResponse:
        return RedirectResponse(auth.HOME, status_code=303)

    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="console-static")
    for module in (
        auth,
        stores,
        store_detail,
        store_restore,
        store_recover,
        store_move,
        operations,
        fleet,
        backups,
        billing,
        health,
    ):
        app.include_router(module.router)
    _install_errors(app)
    app.add_middleware(ConsoleHeaders)
