"""Restoring one of a store's backups into its own database, as ``tenantry restore
--in-place`` does: first the plan is shown (what replaces what, the notes), then the restore
runs only once the database's name is typed (a pinned safety backup of the live database is
taken first; a failure leaves it as it was)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tenantry.api.deps import PlatformDep
from tenantry.backup.storage import storage_for
from tenantry.console.auth import FormDep, WriterDep
from tenantry.console.forms import FormError, form_error
from tenantry.console.templating import render
from tenantry.errors import NotFound, TenantryError
from tenantry.operations.restore import restore
from tenantry.runtime import Platform
from tenantry.services.backups.restore_plan import RestorePlan, plan_restore
from tenantry.services.backups.restoring import RestoreResult
from tenantry.services.permissions import ensure_may_write

router = APIRouter(prefix="/console", include_in_schema=False)


def _plan(platform: Platform, slug: str, backup_id: str) -> RestorePlan:
    """The in-place restore plan of the store's backup ``backup_id`` (another store's backup
    is not found here)."""
    with platform.sessions() as session:
        plan = plan_restore(
            session, platform.box, platform.settings, backup_id, target=None, in_place=True
        )
    if plan.backup_slug != slug:
        raise NotFound(f"store {slug!r} has no backup {backup_id!r}.", "Pick one on its page.")
    return plan


def _page(
    request: Request,
    slug: str,
    plan: RestorePlan,
    *,
    error: FormError | None = None,
    result: RestoreResult | None = None,
) -> HTMLResponse:
    context = {"slug": slug, "plan": plan, "error": error, "result": result}
    return render(request, "restore.html", context)


@router.post("/stores/{slug}/backups/{backup_id}/restore", response_class=HTMLResponse)
def restore_backup(
    slug: str,
    backup_id: str,
    request: Request,
    form: FormDep,
    user: WriterDep,
    platform: PlatformDep,
) -> HTMLResponse:
    """Without ``confirm``: the plan, and the field to type the database's name in. With it:
    the restore (refused unless the name was typed exactly)."""
    plan = _plan(platform, slug, backup_id[:64])
    if "confirm" not in form:
        return _page(request, slug, plan)
    try:
        ensure_may_write("restore a backup")
        result = restore(
            platform.sessions,
            storage_for(platform.settings),
            platform.settings,
            plan,
            confirm=form["confirm"].strip(),
            actor=user.principal.actor,
        )
    except TenantryError as exc:
        return _page(request, slug, plan, error=form_error("restore", exc))
    if plan.store_id is not None:
        platform.router.evict(plan.store_id)  # its next request reconnects to what is there now
    return _page(request, slug, plan, result=result)
