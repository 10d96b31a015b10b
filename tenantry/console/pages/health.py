"""The health page: ``tenantry doctor``'s checks, run on the API's own platform, the alert
rules' current state (on the numbers a scrape exports now), and the registered database
servers with how many stores each holds and the data they hold."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tenantry.api.deps import DispatcherDep, MasterDep, PlatformDep
from tenantry.console.auth import UserDep
from tenantry.console.templating import render
from tenantry.observability import doctor
from tenantry.observability.alert_states import alert_states
from tenantry.observability.checks import diagnose
from tenantry.observability.collectors import PlatformCollector
from tenantry.services import servers
from tenantry.services.server_loads import server_loads

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/health", response_class=HTMLResponse)
def health_page(
    request: Request,
    master: MasterDep,
    user: UserDep,
    platform: PlatformDep,
    dispatcher: DispatcherDep,
) -> HTMLResponse:
    """Every doctor check (status, evidence, the fix), each alert rule's state now, and the
    servers with their stores."""
    context = doctor.DoctorContext.borrow(
        platform.settings,
        platform.master_engine,
        platform.billing_engine,
        platform.box,
        queue_depth=dispatcher.depth,
    )
    results = diagnose(context)
    counts = {s.value: sum(1 for r in results if r.status is s) for s in doctor.Status}
    return render(
        request,
        "health.html",
        {
            "checks": results,
            "overall": doctor.overall(results).value,
            "counts": counts,
            "servers": server_loads(master, servers.list_servers(master)),
            "alerts": alert_states(PlatformCollector(lambda: platform, lambda: dispatcher)),
        },
    )
