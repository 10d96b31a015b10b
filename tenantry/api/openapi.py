"""The OpenAPI document lists, for every operation, every error status it can answer.

Dependencies declare what they raise (:func:`raises`); a route adds what its own inputs
imply (a body: 400/413/422; parameters: 422; a path parameter: 404; a write: 409) and what
it declares in ``responses``. Each error status is documented with the one error model
(:class:`~tenantry.api.errors.ErrorBody`), 429 and 503 with their Retry-After header, and
FastAPI's own validation-error schema (which our handler never returns) is replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from tenantry.api.errors import RETRY_STATUSES, ErrorBody

F = TypeVar("F", bound=Callable[..., Any])

_ATTRIBUTE = "__tenantry_error_statuses__"
_READS = frozenset({"GET", "HEAD", "OPTIONS"})

DESCRIPTIONS = {
    400: "The body could not be read (not UTF-8 JSON).",
    401: "No API key, or an unknown or revoked one.",
    403: "The key may not do this (admin-only, another app, a suspended store, a plan limit).",
    404: "Not found, or not visible to this key.",
    409: "Conflicts with the current state (a duplicate, a running job, a wrong database).",
    413: "The request body is over the size limit.",
    422: "Invalid input: the message names each field that is wrong.",
    429: "The store's monthly API quota is used up; retry after Retry-After seconds.",
    502: "A database server refused an administrative statement.",
    503: "A database is unavailable, busy, or the store's writes are paused; retry after "
    "Retry-After seconds.",
}


def raises(*statuses: int) -> Callable[[F], F]:
    """Declare the error statuses a dependency (or endpoint) can answer."""

    def mark(func: F) -> F:
        setattr(func, _ATTRIBUTE, frozenset(statuses))
        return func

    return mark


def _calls(dependant: Dependant) -> Iterator[Any]:
    yield dependant.call
    for sub in dependant.dependencies:
        yield from _calls(sub)


def error_statuses(route: APIRoute | RouteContext, method: str) -> set[int]:
    """Every error status ``route`` can answer to ``method``."""
    found: set[int] = set()
    for call in _calls(route.dependant):
        found |= set(getattr(call, _ATTRIBUTE, ()))
    if route.body_field is not None:  # a body may name a record (customer, product, plan)
        found |= {400, 404, 413, 422}
    if get_flat_params(route.dependant):
        found.add(422)
    if route.dependant.path_params:
        found |= {404, 409}  # not found; an id prefix matching several
    if method not in _READS and found & {401, 503}:  # a write to a database
        found.add(409)
    found |= {int(code) for code in route.responses if str(code).isdigit() and int(code) >= 400}
    return found


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": DESCRIPTIONS.get(status, HTTPStatus(status).phrase),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    if status in RETRY_STATUSES:
        response["headers"] = {
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
            }
        }
    return response


def build_document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document of ``app`` with every error response documented."""
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(error_schema.pop("$defs", {}))
    schemas["ErrorBody"] = error_schema
    # Included routers are resolved lazily: their routes are reached through route contexts.
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = document["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            statuses = error_statuses(route, method)
            if "422" in responses:  # FastAPI's own, with the schema our handler never sends
                statuses.add(422)
            for status in sorted(statuses):
                responses[str(status)] = _error_response(status)
    return document


def document_errors(app: FastAPI) -> None:
    """Serve :func:`build_document` (built once) as ``app``'s OpenAPI document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
