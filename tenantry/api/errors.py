"""Every error the API returns is JSON: ``{"error": {"type", "message", "hint"}}``.

One place decides an exception's status, body and headers (:func:`status_of`,
:func:`error_response`): the handlers answer with it and the usage log records it, so what a
client got and what was logged never differ.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.routing import Match

from tenantry import errors
from tenantry.api.fields import PATTERN_MEANINGS
from tenantry.db.trouble import UNAVAILABLE_RETRY_AFTER_S, database_trouble

log = logging.getLogger("tenantry.api")

STATUS: list[tuple[type[errors.TenantryError], int]] = [
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.QuotaExceeded, 429),
    (errors.TooManyAttempts, 429),
    (errors.LimitExceeded, 403),
    (errors.StoreUnavailable, 403),
    (errors.Conflict, 409),
    (errors.WrongDatabase, 409),
    (errors.UnidentifiedDatabase, 409),
    (errors.SchemaMismatch, 409),
    (errors.NotOwner, 403),
    (errors.MigrationError, 409),
    (errors.InvalidInput, 422),
    (errors.MalformedPayload, 400),
    (errors.ConfigurationError, 422),
    (errors.DatabaseUnreachable, 503),
    (errors.WritesBlocked, 503),
    (errors.DatabaseAdminError, 502),
]

#: Statuses whose responses always carry Retry-After.
RETRY_STATUSES = frozenset({429, 503})


class ErrorDetail(BaseModel):
    """What went wrong and what to do about it (never a secret)."""

    type: str
    message: str
    hint: str | None


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class PayloadTooLarge(HTTPException):
    """A request body over the limit (raised while it is read, so FastAPI passes it on)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes.")
        self.hint = "Send less: split the request, or shorten its text and metadata."


def status_for(exc: errors.TenantryError) -> int:
    """The HTTP status of a domain error."""
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def status_of(exc: BaseException) -> int:
    """The status the API answers ``exc`` with (500 for anything unexpected)."""
    if isinstance(exc, errors.TenantryError):
        return status_for(exc)
    if isinstance(exc, RequestValidationError):
        return 422
    if isinstance(exc, HTTPException):
        return exc.status_code
    if database_trouble(exc) is not None:
        return 503
    return 500


def error_body(kind: str, message: str, hint: str | None = None) -> dict[str, object]:
    """The JSON body of an error response."""
    return {"error": {"type": kind, "message": message, "hint": hint}}


def headers_for(exc: errors.TenantryError) -> dict[str, str] | None:
    """Headers a domain error's response carries: Retry-After on every 429 and 503, and on
    any error that says when to retry (a request with the same Idempotency-Key running)."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is None and status_for(exc) not in RETRY_STATUSES:
        return None
    return {"Retry-After": str(retry_after or UNAVAILABLE_RETRY_AFTER_S)}


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        if err.get("type") == "json_invalid":
            # FastAPI locates a decode error as ("body", <character offset>).
            at = loc[1] if len(loc) > 1 else "?"
            problems.append(f"body: not valid JSON (at character {at})")
            continue
        where = ".".join(str(p) for p in loc if p != "body") or "body"
        message = err.get("msg")
        pattern = (err.get("ctx") or {}).get("pattern")
        if pattern in PATTERN_MEANINGS:
            message = f"must be {PATTERN_MEANINGS[pattern]}"
        problems.append(f"{where}: {message}")
    return "invalid request: " + "; ".join(problems)


def _allowed_methods(request: Request) -> str:
    """Every method some route of this path answers (Starlette names only the first's); a
    path that a literal route names (``/database-servers/rebalance``) takes that route's
    methods, not those of a templated one it also fits (``/database-servers/{name}``)."""
    literal: set[str] = set()
    templated: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        match, _ = route.matches({**request.scope, "method": "GET"})
        route_methods = route.methods
        if match != Match.NONE and route_methods:
            found = set(route_methods) | ({"HEAD"} if "GET" in route_methods else set())
            (templated if "{" in getattr(route, "path", "{") else literal).update(found)
    return ", ".join(sorted(literal or templated))


def error_response(request: Request, exc: BaseException) -> JSONResponse:
    """The response to ``exc``: its status, the error body and any Retry-After/Allow."""
    status = status_of(exc)
    headers: dict[str, str] | None = None
    if isinstance(exc, errors.TenantryError):
        body = error_body(type(exc).__name__, exc.message, exc.hint)
        headers = headers_for(exc)
    elif isinstance(exc, RequestValidationError):
        body = error_body(
            "InvalidInput",
            _validation_message(exc),
            "Fix the fields named and send the request again.",
        )
    elif isinstance(exc, HTTPException):
        hint = getattr(exc, "hint", None)
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
            hint = f"{request.url.path} takes {headers['Allow']}."
        elif exc.status_code == 404 and hint is None:
            hint = "Check the path against the API documentation at /docs."
        body = error_body(_http_kind(exc.status_code), str(exc.detail), hint)
    elif (trouble := database_trouble(exc)) is not None:
        # A driver's message names hosts and users: logged by kind and type, never answered.
        log.warning(
            "%s on %s %s: %s", trouble.kind, request.method, request.url.path, type(exc).__name__
        )
        wait = "Retry after the number of seconds in the Retry-After header"
        advice = trouble.advice_for("the request")
        body = error_body(
            trouble.kind,
            f"{trouble.said_for('this request')}; this request changed nothing.",
            f"{wait}; {advice}" if advice else f"{wait}.",
        )
        headers = {"Retry-After": str(trouble.retry_after_s)}
    else:
        # Never echo the exception: driver messages can carry connection details.
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        body = error_body(
            "InternalError",
            "an unexpected error occurred; it was logged.",
            "Retry, and report it if it persists.",
        )
    if status in RETRY_STATUSES and not (headers and "Retry-After" in headers):
        headers = {**(headers or {}), "Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)}
    return JSONResponse(body, status_code=status, headers=headers)


_HTTP_KINDS = {
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
}


def _http_kind(status: int) -> str:
    return _HTTP_KINDS.get(status, "HTTPError")


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``: every exception goes through :func:`error_response`."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return error_response(request, exc)

    for kind in (
        errors.TenantryError,
        RequestValidationError,
        HTTPException,
        OperationalError,
        InterfaceError,
        PoolTimeout,
        Exception,
    ):
        app.add_exception_handler(kind, handle)
