"""The backups page: every database (master, billing, a page of stores) against its backup
policy (green, amber or red, in words too), one database's artifacts, and "run now" (the
backup operation ``POST /backups`` queues, followed live)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from tenantry.api.deps import DispatcherDep, MasterDep, PlatformDep
from tenantry.backup.storage import storage_for
from tenantry.console.auth import FormDep, UserDep, WriterDep
from tenantry.console.forms import FormError, form_error
from tenantry.console.pages.operations import shown
from tenantry.console.templating import render
from tenantry.db.master.models import BackupStatus
from tenantry.errors import TenantryError
from tenantry.operations import backup_request, records
from tenantry.services.backups.catalog import list_backups
from tenantry.services.backups.policies import policy_for
from tenantry.services.backups.scheduling import protection
from tenantry.services.backups.targets import parse_scope, scope_name
from tenantry.services.store_overview import search_stores

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE_SIZE = 50
#: A store whose database is in one of these states can be backed up.
HAS_DATABASE = ("active", "suspended")
LIVE = (BackupStatus.QUEUED, BackupStatus.RUNNING)


@router.get("/backups", response_class=HTMLResponse)
def backups_page(
    request: Request,
    master: MasterDep,
    user: UserDep,
    q: str = Query("", max_length=255),
    page: int = Query(1, ge=1, le=100_000),
) -> HTMLResponse:
    """Master, billing and a page of stores, each against its policy."""
    rows, total = search_stores(master, search=q, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    scopes = ["master", "billing", *(scope_name("tenant", r.store.slug) for r in rows)]
    found = protection(master, scopes)
    context: dict[str, Any] = {
        "platform_rows": found[:2],
        "store_rows": list(zip(rows, found[2:], strict=True)),
        "q": q,
        "total": total,
        "page": page,
        "pages": max(1, -(-total // PAGE_SIZE)),
        "has_database": HAS_DATABASE,
    }
    return render(request, "backups.html", context)


def artifacts_page(
    request: Request, master: Session, scope: str, *, error: FormError | None = None
) -> HTMLResponse:
    """One database's backups, newest first, those not over with their live progress."""
    parse_scope(scope)  # an unknown scope is a 422 naming the forms that exist
    found = list_backups(master, scope=scope, limit=PAGE_SIZE)
    live = {
        b.id: shown(records.get_operation(master, str(b.id))) for b in found if b.status in LIVE
    }
    context = {
        "scope": scope,
        "policy": policy_for(master, scope),
        "backups": found,
        "live": live,
        "error": error,
    }
    return render(request, "backup_artifacts.html", context)


@router.get("/backups/db/{scope}", response_class=HTMLResponse)
def artifacts(scope: str, request: Request, master: MasterDep, user: UserDep) -> HTMLResponse:
    """The artifacts of ``scope`` (``master``, ``billing`` or ``store:SLUG``)."""
    return artifacts_page(request, master, scope[:80])


@router.post("/backups/db/{scope}/run", response_class=HTMLResponse)
def run_now(
    scope: str,
    request: Request,
    form: FormDep,
    user: WriterDep,
    platform: PlatformDep,
    dispatcher: DispatcherDep,
) -> Response:
    """Queue a backup of ``scope`` now; its progress shows on the database's page."""
    scope = scope[:80]
    try:
        backup_request.request(
            platform,
            dispatcher,
            storage_for(platform.settings),
            scope,
            label=(form.get("label") or "").strip()[:255] or None,
            pinned=form.get("pin") == "on",
            actor=user.principal.actor,
        )
    except TenantryError as exc:
        shown_error = form_error("run", exc)
        with platform.sessions() as master:
            return artifacts_page(request, master, scope, error=shown_error)
    return RedirectResponse(f"/console/backups/db/{quote(scope, safe=':')}", status_code=303)
