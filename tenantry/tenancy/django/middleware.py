"""``TenantMiddleware`` for Django: resolves each request's store with the same strategies,
resolution cache and refusals (404 unknown, 403 suspended, 400 garbage Host, 401 bad API
key; tenantry's JSON error body) as the ASGI and WSGI middlewares.

    MIDDLEWARE = [..., "tenantry.tenancy.django.TenantMiddleware", ...]

A resolved request carries ``request.tenant`` (a :class:`~tenantry.ResolvedStore`) and
``request.tenantry`` (the :class:`~tenantry.Tenantry` object). A path prefix consumed by
``"path"`` resolution is moved from ``request.path_info`` to the script prefix, so URL
patterns and ``reverse()`` see the app's own paths.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import get_script_prefix, set_script_prefix

from tenantry.errors import LimitExceeded, StoreUnavailable, TenantryError, WritesBlocked
from tenantry.tenancy.django.config import tenancy
from tenantry.tenancy.django.database import activated
from tenantry.tenancy.resolver import Refusal, refusal_of
from tenantry.tenancy.strategies import RequestFacts

#: Errors a view's tenant session can raise that are answers, not bugs: the store was
#: suspended since it was resolved, its writes are blocked (503), a plan limit (403).
SESSION_REFUSALS = (StoreUnavailable, WritesBlocked, LimitExceeded)


def refusal_response(refusal: Refusal) -> JsonResponse:
    """``refusal`` as Django answers it (Retry-After on a 503)."""
    response = JsonResponse(refusal.body(), status=refusal.status)
    if refusal.retry_after:
        response["Retry-After"] = str(refusal.retry_after)
    return response


def _facts(request: HttpRequest) -> RequestFacts:
    headers = {name.lower(): str(value) for name, value in request.headers.items()}
    # The raw Host (Django's get_host() would refuse hosts outside ALLOWED_HOSTS with its
    # own 400 before tenantry could name them; ALLOWED_HOSTS still applies to the views).
    host = request.META.get("HTTP_HOST") or request.META.get("SERVER_NAME")
    return RequestFacts(host, request.path_info or "/", headers)


class TenantMiddleware:
    """Resolves the store of every request before the views see it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        setup = tenancy()
        if (request.path_info or "/").startswith(setup.exempt):
            return self.get_response(request)
        try:
            resolved = setup.resolver.resolve(_facts(request))
        except TenantryError as exc:
            return refusal_response(refusal_of(exc))
        request.tenant = resolved  # type: ignore[attr-defined]
        request.tenantry = setup.app  # type: ignore[attr-defined]
        prefix = get_script_prefix()
        if resolved.prefix:
            request.path_info = resolved.path
            set_script_prefix(prefix.rstrip("/") + resolved.prefix)
        try:
            with activated(setup, resolved):
                return self.get_response(request)
        finally:
            if resolved.prefix:
                set_script_prefix(prefix)

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        """A view's tenant session refused (suspended, writes blocked, plan limit): the
        answer the API gives; anything else is Django's to handle."""
        if isinstance(exc, SESSION_REFUSALS):
            return refusal_response(refusal_of(exc))
        return None
