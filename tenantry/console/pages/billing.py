"""The billing page: the apps using billing, webhook failure rates per app and processor, and
one app's customers, subscriptions, invoices (with milestones), payments and webhook events,
50 a page; a failed (or ignored) event replayed as ``POST /billing/events/{id}/replay``
does; processor signing secrets listed by the dates they were added and retired, never more.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tenantry.api.deps import PlatformDep
from tenantry.console.auth import FormDep, UserDep, WriterDep
from tenantry.console.forms import FormError, form_error
from tenantry.console.templating import render
from tenantry.db.billing.models import (
    InvoiceStatus,
    PaymentStatus,
    SubscriptionStatus,
    WebhookStatus,
)
from tenantry.errors import TenantryError
from tenantry.runtime import Platform
from tenantry.services.billing import overview, validation, webhook_secrets
from tenantry.services.billing import webhooks as events
from tenantry.services.permissions import ensure_may_write

router = APIRouter(prefix="/console", include_in_schema=False)

PAGE_SIZE = 50
#: The statuses each list can be filtered by.
STATUSES: dict[str, list[str]] = {
    "customers": [],
    "subscriptions": [s.value for s in SubscriptionStatus],
    "invoices": [s.value for s in InvoiceStatus],
    "payments": [s.value for s in PaymentStatus],
    "events": [s.value for s in WebhookStatus],
}
#: An event in one of these states may be replayed from the page (a processed one changes
#: nothing when applied again, so it is not offered).
REPLAYABLE = (WebhookStatus.FAILED, WebhookStatus.IGNORED)


def billing_page(
    request: Request,
    platform: Platform,
    *,
    app: str = "",
    tab: str = "events",
    status: str = "",
    page: int = 1,
    error: FormError | None = None,
    replayed: str | None = None,
) -> HTMLResponse:
    """The apps, the failure rates, and a page of ``app``'s ``tab`` (the first app when none
    is named)."""
    with platform.billing_sessions() as billing:
        found = overview.apps(billing)
        chosen = validation.app_id(app) if app else (found[0].app_id if found else "")
        rows: list[Any] = []
        total = 0
        secrets: list[Any] = []
        if chosen:
            rows, total = overview.page_of(
                billing,
                tab,
                chosen,
                status=status or None,
                limit=PAGE_SIZE,
                offset=(page - 1) * PAGE_SIZE,
            )
            secrets = webhook_secrets.list_secrets(billing, chosen)
        context: dict[str, Any] = {
            "apps": found,
            "rates": overview.webhook_rates(billing),
            "app": chosen,
            "tab": tab,
            "tabs": list(overview.LISTS),
            "status": status,
            "statuses": STATUSES.get(tab, []),
            "rows": rows,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // PAGE_SIZE)),
            "query": urlencode({"app": chosen, "tab": tab, "status": status}),
            "secrets": [
                {"processor": s.processor, "added": s.created_at, "retired": s.retired_at}
                for s in secrets
            ],
            "replayable": [s.value for s in REPLAYABLE],
            "error": error,
            "replayed": replayed,
        }
        return render(request, "billing.html", context)


@router.get("/billing", response_class=HTMLResponse)
def billing(
    request: Request,
    user: UserDep,
    platform: PlatformDep,
    app: str = Query("", max_length=64),
    tab: str = Query("events", max_length=16),
    status: str = Query("", max_length=32),
    page: int = Query(1, ge=1, le=100_000),
    replayed: str = Query("", max_length=255),
) -> HTMLResponse:
    """Billing's apps, webhook failure rates, and one app's records."""
    return billing_page(
        request, platform, app=app, tab=tab, status=status, page=page, replayed=replayed or None
    )


@router.post("/billing/events/{event_id}/replay", response_class=HTMLResponse)
def replay(
    event_id: str,
    request: Request,
    form: FormDep,
    user: WriterDep,
    platform: PlatformDep,
) -> Response:
    """Queue the app's event to be applied again (its effects are idempotent); the webhook
    worker applies it within a second or two."""
    app = form.get("app", "")
    try:
        ensure_may_write("replay a webhook event")
        with platform.billing_writer_sessions.begin() as billing:
            row = events.replay(
                billing,
                events.get_webhook(billing, event_id[:255], app_id=validation.app_id(app)),
                actor=user.principal.actor,
            )
            replayed = row.event_id
    except TenantryError as exc:
        shown = form_error("replay", exc)
        return billing_page(request, platform, app=app, tab="events", error=shown)
    query = urlencode({"app": app, "tab": "events", "replayed": replayed})
    return RedirectResponse(f"/console/billing?{query}", status_code=303)
