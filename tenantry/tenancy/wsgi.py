"""The WSGI counterpart of the ASGI tenant middleware (Flask, Django's WSGI handler…).

The resolved store goes in ``environ["tenantry.store"]``; a consumed path prefix moves from
``PATH_INFO`` to ``SCRIPT_NAME``. Unresolvable requests are answered here, in JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from tenantry.errors import TenantryError
from tenantry.tenancy.resolver import ENVIRON_KEY, TenantResolver, refusal_of
from tenantry.tenancy.strategies import RequestFacts

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    503: "Service Unavailable",
}


class WsgiTenantMiddleware:
    """Resolves the store of every request before ``app`` sees it."""

    def __init__(
        self, app: WSGIApp, resolver: TenantResolver, *, exempt: tuple[str, ...] = ()
    ) -> None:
        """``exempt``: path prefixes served without a store."""
        self.app = app
        self.resolver = resolver
        self.exempt = exempt

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        if path.startswith(self.exempt):
            return self.app(environ, start_response)
        headers = {
            key[5:].replace("_", "-").lower(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        host = environ.get("HTTP_HOST") or environ.get("SERVER_NAME")
        try:
            resolved = self.resolver.resolve(RequestFacts(host, path, headers))
        except TenantryError as exc:
            refusal = refusal_of(exc)
            body = json.dumps(refusal.body()).encode()
            start_response(
                f"{refusal.status} {_REASONS.get(refusal.status, 'Error')}",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        environ[ENVIRON_KEY] = resolved
        if resolved.prefix:
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + resolved.prefix
            environ["PATH_INFO"] = resolved.path
        return self.app(environ, start_response)
