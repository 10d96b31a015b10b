"""The stores page: a searchable, paginated list, and creating a store with its database."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from tenantry.api.deps import DispatcherDep, MasterDep, PlatformDep
from tenantry.console.auth import FormDep, UserDep, WriterDep
from tenantry.console.forms import FormError, form_error, provision_choice
from tenantry.console.pages.store_detail import detail_page
from tenantry.console.templating import render
from tenantry.db.master.models import DatabaseStatus
from tenantry.errors import TenantryError
from tenantry.operations import provision_request, store_create
from tenantry.services import servers
from tenantry.services.plans import PLANS
from tenantry.services.store_overview import search_stores

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE_SIZE = 50
STATUSES = ("pending", *(str(s) for s in DatabaseStatus))


def _page(
    request: Request,
    master: Session,
    *,
    q: str = "",
    status: str = "",
    page: int = 1,
    error: FormError | None = None,
    form: dict[str, str] | None = None,
    code: int = 200,
) -> HTMLResponse:
    rows, total = search_stores(
        master, search=q, status=status or None, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
    )
    pages = max(1, -(-total // PAGE_SIZE))
    context: dict[str, Any] = {
        "rows": rows,
        "total": total,
        "q": q,
        "status": status,
        "statuses": STATUSES,
        "page": page,
        "pages": pages,
        "query": f"q={quote(q)}&status={quote(status)}",
        "plans": list(PLANS),
        "servers": [s.name for s in servers.list_servers(master) if s.is_active],
        "error": error,
        "form": form or {},
        "deleted": request.query_params.get("deleted"),
    }
    return render(request, "stores.html", context, status=code)


@router.get("/stores", response_class=HTMLResponse)
def stores_page(
    request: Request,
    master: MasterDep,
    user: UserDep,
    q: str = Query("", max_length=255),
    status: str = Query("", max_length=32),
    page: int = Query(1, ge=1, le=100_000),
) -> HTMLResponse:
    """Every store: status, plan, server, revision, size and last backup; search by slug or
    name, filter by status; and the form that creates a store."""
    return _page(request, master, q=q, status=status, page=page)


@router.post("/stores", response_class=HTMLResponse)
def create_store(
    request: Request,
    form: FormDep,
    user: WriterDep,
    platform: PlatformDep,
    dispatcher: DispatcherDep,
) -> Response:
    """Create a store and start provisioning its database; its page follows the progress."""
    actor = user.principal.actor
    try:
        choice = provision_choice(form)  # checked before anything is written
        created = store_create.create(
            platform,
            slug=form.get("slug", "").strip(),
            name=form.get("name", "").strip(),
            plan=form.get("plan") or "free",
            region=form.get("region", "").strip() or None,
            actor=actor,
        )
    except TenantryError as exc:
        shown = form_error("create", exc)
        with platform.sessions() as master:
            return _page(request, master, error=shown, form=form)
    slug = created.slug
    try:
        provision_request.request(
            platform,
            dispatcher,
            created.id,
            mode=choice.mode,
            server=choice.server,
            url=choice.url,
            actor=actor,
        )
    except TenantryError as exc:
        # The store exists (pending): its page says why provisioning did not start, beside
        # the form that starts it again.
        shown = form_error("provision", exc)
        with platform.sessions() as master:
            return detail_page(request, platform, master, slug, error=shown)
    return RedirectResponse(f"/console/stores/{quote(slug)}", status_code=303)
