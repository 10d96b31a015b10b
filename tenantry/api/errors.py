"""Every error the API returns is JSON: ``{"error": {"type", "message", "hint"}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from tenantry import errors

log = logging.getLogger("tenantry.api")

STATUS: list[tuple[type[errors.TenantryError], int]] = [
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.QuotaExceeded, 429),
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


def status_for(exc: errors.TenantryError) -> int:
    """The HTTP status of a domain error."""
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def headers_for(exc: errors.TenantryError) -> dict[str, str] | None:
    """Headers a domain error's response carries (Retry-After while writes are blocked)."""
    if isinstance(exc, errors.WritesBlocked):
        return {"Retry-After": str(exc.retry_after)}
    return None


#: What a client told the database is busy waits before retrying.
BUSY_RETRY_AFTER_S = 1


def is_lock_timeout(exc: OperationalError) -> bool:
    """Whether ``exc`` is SQLite's "database is locked": another writer held the file's
    lock for longer than the busy timeout. Nothing of the transaction was written."""
    return "database is locked" in str(exc.orig)


def error_body(kind: str, message: str, hint: str | None = None) -> dict[str, object]:
    """The JSON body of an error response."""
    return {"error": {"type": kind, "message": message, "hint": hint}}


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""

    @app.exception_handler(errors.TenantryError)
    async def _domain(request: Request, exc: errors.TenantryError) -> JSONResponse:
        return JSONResponse(
            error_body(type(exc).__name__, exc.message, exc.hint),
            status_code=status_for(exc),
            headers=headers_for(exc),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            problems.append(f"{where}: {err.get('msg')}")
        return JSONResponse(
            error_body(
                "InvalidInput",
                "invalid request: " + "; ".join(problems),
                "Fix the fields named and send the request again.",
            ),
            status_code=422,
        )

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            error_body("HTTPError", str(exc.detail)),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(OperationalError)
    async def _operational(request: Request, exc: OperationalError) -> JSONResponse:
        if not is_lock_timeout(exc):
            return await _unexpected(request, exc)
        log.warning("database busy on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body(
                "DatabaseBusy",
                "the database stayed locked by another writer for longer than its busy "
                "timeout; this request changed nothing.",
                "Retry after the number of seconds in the Retry-After header.",
            ),
            status_code=503,
            headers={"Retry-After": str(BUSY_RETRY_AFTER_S)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never echo the exception: driver messages can carry connection details.
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse(
            error_body(
                "InternalError",
                "an unexpected error occurred; it was logged.",
                "Retry, and report it if it persists.",
            ),
            status_code=500,
        )
