"""The fleet page: tenants per revision, lagging and failed tenants, the last run followed
live; ``fleet migrate`` started only after its SQL preview was shown (what ``tenantry fleet
migrate --sql`` prints), and ``fleet status --verify`` run with its result shown.

The migration is a queued fleet run (one operation, one job per tenant for the workers), so
its progress is the operations page's bar, found again after a reload.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from tenantry.api.deps import DispatcherDep, MasterDep, PlatformDep
from tenantry.console.auth import FormDep, UserDep, WriterDep
from tenantry.console.charts import count_bars
from tenantry.console.forms import FormError, form_error
from tenantry.console.pages.operations import shown
from tenantry.console.templating import render
from tenantry.db import migrations
from tenantry.db.master.models import FleetRun
from tenantry.errors import InvalidInput, TenantryError
from tenantry.operations.fleet_queue import start_queued_run
from tenantry.operations.fleet_verify import verify_fleet
from tenantry.runtime import Platform
from tenantry.services.fleet_migrate import MigrateOptions, TenantCheck, plan_sql
from tenantry.services.fleet_status import fleet_counts, fleet_status
from tenantry.services.fleet_targets import tenant_databases
from tenantry.services.permissions import ensure_may_write

router = APIRouter(prefix="/console", include_in_schema=False)

#: How many lagging or failed tenants a page names (the counts are always whole).
SHOWN = 50
#: Tenant databases opened at once by the preview and by verify.
CONCURRENCY = 4
#: Verify runs within the request: beyond this many tenant databases it would hold the page
#: for minutes, and the CLI (which shows its progress) is the place for it.
VERIFY_AT_MOST = 500


def fleet_page(
    request: Request,
    platform: Platform,
    master: Session,
    *,
    error: FormError | None = None,
    checks: list[TenantCheck] | None = None,
) -> HTMLResponse:
    """The fleet as master records it (``checks``: a verify's result, shown once): whole
    counts, and a page of :data:`SHOWN` lagging or failed stores after ``?cursor=``."""
    cursor = request.query_params.get("cursor") or None
    try:
        st = fleet_status(master, platform.tenant_spec, limit=SHOWN, cursor=cursor)
    except InvalidInput:  # a hand-edited link: the first page
        st = fleet_status(master, platform.tenant_spec, limit=SHOWN)
    run = master.get(FleetRun, uuid.UUID(st.last_run["id"])) if st.last_run else None
    problems = [c for c in checks or [] if not c.ok]
    context: dict[str, Any] = {
        "st": st,
        "bars": count_bars(st.per_revision, marked=st.head, mark="head"),
        "lagging": st.lagging,
        "failed": st.failed,
        "run": shown(run) if run is not None else None,
        "error": error,
        "checks": checks,
        "problems": problems,
    }
    return render(request, "fleet.html", context)


@router.get("/fleet", response_class=HTMLResponse)
def fleet(request: Request, master: MasterDep, user: UserDep, platform: PlatformDep) -> Response:
    """Tenants per revision, lagging and failed tenants, the last run."""
    return fleet_page(request, platform, master)


@router.get("/fleet/preview", response_class=HTMLResponse)
def preview(request: Request, user: UserDep, platform: PlatformDep) -> Response:
    """The SQL a migration to head would run, per dialect and starting revision (each
    tenant's revision read from its database, nothing changed); then the confirm button."""
    spec = platform.tenant_spec
    goal = migrations.resolve(spec, "head")
    with platform.sessions() as session:
        tenants = tenant_databases(session, platform.box)
    plans, unreadable = plan_sql(tenants, spec, goal, concurrency=CONCURRENCY)
    context = {"goal": goal, "plans": plans, "unreadable": unreadable, "tenants": len(tenants)}
    return render(request, "fleet_preview.html", context)


@router.post("/fleet/migrate", response_class=HTMLResponse)
def migrate(
    request: Request,
    form: FormDep,
    user: WriterDep,
    platform: PlatformDep,
    dispatcher: DispatcherDep,
) -> Response:
    """Start the migration whose preview was shown: a queued fleet run, followed live on the
    fleet page. Refused when the target revision is not the one previewed."""
    try:
        ensure_may_write("migrate the fleet")
        goal = migrations.resolve(platform.tenant_spec, "head")
        previewed = form.get("target")
        if previewed is None:
            raise InvalidInput(
                "a fleet migration starts from its SQL preview.",
                "Press “Preview migration”, read the SQL, then confirm there.",
            )
        if previewed != (goal or ""):
            raise InvalidInput(
                f"the preview was for revision {previewed!r}, the head is now {goal!r}.",
                "Preview the migration again.",
            )
        settings = platform.settings
        options = MigrateOptions(goal=goal, acting_app=settings.app, owner=settings.tenant_owner)
        run_id, store_ids = start_queued_run(
            platform.sessions,
            platform.box,
            platform.tenant_spec,
            options,
            lock_ttl=timedelta(seconds=settings.job_lease_seconds),
            actor=user.principal.actor,
        )
        if store_ids:
            dispatcher.enqueue_fleet_tenants(run_id, store_ids)
    except TenantryError as exc:
        shown_error = form_error("migrate", exc)
        with platform.sessions() as master:
            return fleet_page(request, platform, master, error=shown_error)
    return RedirectResponse("/console/fleet", status_code=303)


@router.post("/fleet/verify", response_class=HTMLResponse)
def verify(request: Request, form: FormDep, user: WriterDep, platform: PlatformDep) -> Response:
    """Open every tenant database and check it (``fleet status --verify``); master learns
    each real revision, so this is an action a viewer may not take."""
    try:
        ensure_may_write("verify the fleet")
        with platform.sessions() as master:
            total = sum(fleet_counts(master, platform.tenant_spec).per_revision.values())
        if total > VERIFY_AT_MOST:
            raise InvalidInput(
                f"the fleet has {total} tenant databases; the console verifies at most "
                f"{VERIFY_AT_MOST} in one request.",
                "Run `tenantry fleet status --verify` (it shows its progress as it goes).",
            )
        checks = verify_fleet(
            platform.sessions, platform.box, platform.tenant_spec, concurrency=CONCURRENCY
        )
    except TenantryError as exc:
        shown_error = form_error("verify", exc)
        with platform.sessions() as master:
            return fleet_page(request, platform, master, error=shown_error)
    with platform.sessions() as master:
        return fleet_page(request, platform, master, checks=checks)
