"""The operations page: every running and recent operation with live progress, and cancel.

An operation's progress is a fragment that htmx polls every second while the operation is
not over (the fragment it gets back stops polling once it ended); the pages find a store's
running operation again after a reload, so the bar survives one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tenantry.api.deps import MasterDep, PlatformDep
from tenantry.console.auth import FormDep, UserDep, WriterDep
from tenantry.console.templating import render
from tenantry.db.master.models import (
    ACTIVE_STATUSES,
    Operation,
    OperationKind,
    OperationStatus,
    ProvisioningJob,
    lifecycle_status,
)
from tenantry.errors import InvalidInput
from tenantry.operations import records
from tenantry.operations.kit import progress_of

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE_SIZE = 50


@dataclass(frozen=True)
class Shown:
    """An operation as the console shows it: status, percent done (None while unknown),
    and the words beside the bar."""

    operation: Operation
    status: str
    active: bool
    percent: int | None
    step: str | None
    count: str | None
    message: str | None
    stalled: bool


def shown(operation: Operation) -> Shown:
    """What the progress fragment shows of ``operation``."""
    status = lifecycle_status(operation)
    progress = progress_of(operation)
    percent: int | None
    if status == OperationStatus.SUCCEEDED:
        percent = 100
    elif isinstance(operation, ProvisioningJob):
        percent = operation.progress
    elif progress.total:
        percent = min(100, round(100 * progress.current / progress.total))
    else:
        percent = None
    count = None
    if progress.total:
        count = f"{progress.current:,} of {progress.total:,} {progress.unit or ''}".strip()
    return Shown(
        operation,
        status,
        status in ACTIVE_STATUSES,
        percent,
        progress.step,
        count,
        operation.error if status == OperationStatus.FAILED else progress.message,
        records.is_stalled(operation),
    )


def _choice(value: str, allowed: Any, what: str) -> Any:
    if not value:
        return None
    try:
        return allowed(value)
    except ValueError:
        raise InvalidInput(
            f"unknown {what} {value!r}.", f"Choose one of: {', '.join(a.value for a in allowed)}."
        ) from None


@router.get("/operations", response_class=HTMLResponse)
def operations_page(
    request: Request,
    master: MasterDep,
    user: UserDep,
    kind: str = Query("", max_length=32),
    status: str = Query("", max_length=16),
    page: int = Query(1, ge=1, le=100_000),
) -> HTMLResponse:
    """Every operation, newest first, with live progress for those not over."""
    found, total = records.list_operations(
        master,
        kind=_choice(kind, OperationKind, "kind"),
        status=_choice(status, OperationStatus, "status"),
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    context = {
        "rows": [shown(op) for op in found],
        "total": total,
        "kind": kind,
        "status": status,
        "kinds": [k.value for k in OperationKind],
        "statuses": [s.value for s in OperationStatus],
        "page": page,
        "pages": max(1, -(-total // PAGE_SIZE)),
    }
    return render(request, "operations.html", context)


@router.get("/operations/{operation_id}/progress", response_class=HTMLResponse)
def progress_fragment(
    operation_id: str,
    request: Request,
    master: MasterDep,
    user: UserDep,
    then: str | None = None,
) -> HTMLResponse:
    """The operation's progress bar (polled by the pages while it is not over). With
    ``then=reload`` (a store's page), an operation that ended reloads the whole page, whose
    other parts (the database, the store's status, its operations) it changed."""
    operation = records.get_operation(master, operation_id[:64])
    op = shown(operation)
    context = {"op": op, "oob": True, "reload_when_done": then == "reload"}
    response = render(request, "fragments/progress_live.html", context)
    if then == "reload" and not op.active:
        response.headers["HX-Refresh"] = "true"
    return response


@router.post("/operations/{operation_id}/cancel", response_class=HTMLResponse)
def cancel(
    operation_id: str,
    request: Request,
    form: FormDep,
    user: WriterDep,
    platform: PlatformDep,
) -> Response:
    """Ask the operation to stop (queued: at once; running: at its next step boundary)."""
    with platform.writer_sessions.begin() as master:
        operation = records.get_operation(master, operation_id[:64])
        records.request_cancel(master, operation, actor=user.principal.actor)
    if request.headers.get("HX-Request"):
        with platform.sessions() as master:
            fresh = records.get_operation(master, operation_id[:64])
            return render(request, "fragments/progress.html", {"op": shown(fresh)})
    back = form.get("next") or "/console/operations"
    if not back.startswith("/console/"):
        back = "/console/operations"
    return RedirectResponse(back, status_code=303)
