"""One store's page: its database, usage, plan limits, API keys, operations, audit entries
and backups; provisioning, suspending, resuming and deleting it (typed confirmation), and
creating (shown once) and revoking its API keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from tenantry.api.deps import DispatcherDep, MasterDep, PlatformDep
from tenantry.backup.storage import storage_for
from tenantry.console.auth import FormDep, UserDep, WriterDep
from tenantry.console.charts import bar_chart
from tenantry.console.forms import FormError, form_error, provision_choice
from tenantry.console.pages.operations import shown as shown_op
from tenantry.console.templating import render
from tenantry.db.master.models import ApiKey, DatabaseServer, OperationKind, Store
from tenantry.errors import InvalidInput, TenantryError
from tenantry.operations import backup_request, provision_request, records, store_delete
from tenantry.runtime import Platform
from tenantry.services import apikeys, audit_query, servers, stores, usage
from tenantry.services.backups.catalog import list_backups
from tenantry.services.permissions import ensure_may_write
from tenantry.services.store_overview import just_ended_operation, running_operation

router = APIRouter(prefix="/console", include_in_schema=False)

#: How many of the store's operations, audit entries and backups the page shows.
RECENT = 10
#: The store's own fields shown as its database, never a password.
CONNECTION_FIELDS = ("engine", "host", "port", "database", "username", "path", "schema")


def _connection(master: Session, store: Store) -> dict[str, Any] | None:
    connection = stores.active_connection(master, store)
    if connection is None:
        return None
    shown = {k: connection.config_data.get(k) for k in CONNECTION_FIELDS}
    server = (
        master.get(DatabaseServer, connection.database_server_id)
        if connection.database_server_id
        else None
    )
    return {
        "fields": {k: v for k, v in shown.items() if v not in (None, "")},
        "server": server.name if server is not None else None,
        "instance_id": connection.instance_id,
        "access_mode": connection.access_mode,
        "created_by_tenantry": connection.created_by_tenantry,
        "schema": connection.db_schema,
    }


def _limits(master: Session, store: Store) -> list[dict[str, Any]]:
    """Each limit of the store's plan beside what the store uses of it."""
    sub = stores.current_subscription(master, store)
    if sub is None:
        return []
    storage_limit = usage.storage_limit_bytes(sub.max_storage_gb)
    rows = [
        ("Products", store.product_count, sub.max_products, None),
        ("Orders this month", store.order_count, sub.max_orders_per_month, None),
        ("API calls this month", store.api_calls_month, sub.max_api_calls_per_month, None),
        ("Storage", store.storage_used_bytes, storage_limit, "bytes"),
    ]
    shown = []
    for label, used, allowed, unit in rows:
        percent = None if not allowed else min(100, round(100 * used / allowed))
        shown.append(
            {"label": label, "used": used, "limit": allowed, "unit": unit, "percent": percent}
        )
    return shown


def detail_page(
    request: Request,
    platform: Platform,
    master: Session,
    slug: str,
    *,
    error: FormError | None = None,
    new_key: str | None = None,
    moved_to: str | None = None,
    code: int = 200,
) -> HTMLResponse:
    """The store's page (``error`` shown beside its form, a ``new_key`` shown this once)."""
    store = stores.get_store(master, slug)
    today = datetime.now(UTC).date()
    used = usage.store_usage(master, store, 30, today=today)
    with platform.billing_sessions() as billing:
        flt = audit_query.AuditFilter(store_id=store.id, store_slug=store.slug)
        audit = [
            audit_query.document(e) for e in audit_query.entries(master, billing, flt, limit=RECENT)
        ]
    ops, ops_total = records.list_operations(master, store_id=store.id, limit=RECENT)
    keys = master.scalars(
        select(ApiKey).where(ApiKey.store_id == store.id).order_by(ApiKey.created_at)
    )
    status = stores.lifecycle_status(master, store)
    provisions, _ = records.list_operations(
        master, kind=OperationKind.PROVISION, store_id=store.id, limit=1
    )
    context: dict[str, Any] = {
        "store": store,
        "status": status,
        # Why the last provisioning failed (its error never holds a secret).
        "failure": provisions[0].error if provisions and status == "failed" else None,
        "connection": _connection(master, store),
        "running": shown_op(running) if (running := running_operation(master, store.id)) else None,
        "ended": (
            shown_op(ended)
            if running is None and (ended := just_ended_operation(master, store.id))
            else None
        ),
        "charts": [
            bar_chart("API calls per day", used.days, lambda d: d.api_calls, last=today),
            bar_chart("Products (total)", used.days, lambda d: d.total_products, last=today),
            bar_chart("Orders created per day", used.days, lambda d: d.orders_created, last=today),
        ],
        "limits": _limits(master, store),
        "keys": [(k, apikeys.is_read_only(k)) for k in keys],
        "operations": ops,
        "operations_total": ops_total,
        "audit": audit,
        "backups": list_backups(master, scope=f"store:{store.slug}", limit=RECENT),
        "servers": [s.name for s in servers.list_servers(master) if s.is_active],
        "error": error,
        "new_key": new_key,
        "moved_to": moved_to,
    }
    return render(request, "store_detail.html", context, status=code)


@router.get("/stores/{slug}", response_class=HTMLResponse)
def store_page(
    slug: str, request: Request, master: MasterDep, user: UserDep, platform: PlatformDep
) -> HTMLResponse:
    """A store: its database, usage, limits, keys, operations, audit entries and backups."""
    return detail_page(request, platform, master, slug)


def show_again(
    request: Request, platform: Platform, slug: str, form: str, exc: TenantryError
) -> HTMLResponse:
    """The store's page again, ``exc`` shown beside ``form``."""
    shown = form_error(form, exc)
    with platform.sessions() as master:
        return detail_page(request, platform, master, slug, error=shown)


def confirmed(form: dict[str, str], slug: str, what: str) -> None:
    """Refuse unless the store's slug was typed (as the CLI asks before it acts)."""
    typed = (form.get("confirm") or "").strip()
    if typed != slug:
        raise InvalidInput(
            f"type the store's slug {slug!r} to confirm that you want to {what} it"
            + (f" (you typed {typed!r})." if typed else "."),
            "Type the slug exactly, then press the button again.",
        )


def _back(slug: str) -> RedirectResponse:
    return RedirectResponse(f"/console/stores/{quote(slug)}", status_code=303)


@router.post("/stores/{slug}/provision", response_class=HTMLResponse)
def provision(
    slug: str,
    request: Request,
    form: FormDep,
    user: WriterDep,
    platform: PlatformDep,
    dispatcher: DispatcherDep,
) -> Response:
    """Start provisioning the store's database (a pending or failed store)."""
    try:
        choice = provision_choice(form)
        provision_request.request(
            platform,
            dispatcher,
            slug,
            mode=choice.mode,
            server=choice.server,
            url=choice.url,
            actor=user.principal.actor,
        )
    except TenantryError as exc:
        return show_again(request, platform, slug, "provision", exc)
    return _back(slug)


@router.post("/stores/{slug}/suspend", response_class=HTMLResponse)
def suspend(
    slug: str, request: Request, form: FormDep, user: WriterDep, platform: PlatformDep
) -> Response:
    """Suspend the store (its slug typed to confirm): its traffic is refused."""
    try:
        ensure_may_write("suspend a store")
        confirmed(form, slug, "suspend")
        with platform.writer_sessions.begin() as master:
            store = stores.get_store(master, slug)
            stores.suspend_store(
                master, store, reason=form.get("reason", "")[:255], actor=user.principal.actor
            )
            store_id = store.id
    except TenantryError as exc:
        return show_again(request, platform, slug, "suspend", exc)
    platform.router.evict(store_id)
    return _back(slug)


@router.post("/stores/{slug}/resume", response_class=HTMLResponse)
def resume(
    slug: str, request: Request, form: FormDep, user: WriterDep, platform: PlatformDep
) -> Response:
    """Serve a suspended store again (its slug typed to confirm)."""
    try:
        ensure_may_write("resume a store")
        confirmed(form, slug, "resume")
        with platform.writer_sessions.begin() as master:
            stores.resume_store(master, stores.get_store(master, slug), actor=user.principal.actor)
    except TenantryError as exc:
        return show_again(request, platform, slug, "resume", exc)
    return _back(slug)


@router.post("/stores/{slug}/delete", response_class=HTMLResponse)
def delete(
    slug: str, request: Request, form: FormDep, user: WriterDep, platform: PlatformDep
) -> Response:
    """Delete the store (its slug typed to confirm); with "drop database", the database
    tenantry created for it too (never one it only connected to)."""
    try:
        ensure_may_write("delete a store")
        confirmed(form, slug, "delete")
        deletion = store_delete.plan(
            platform, slug, drop_database=form.get("drop_database") == "on"
        )
        store_delete.delete(platform, deletion, actor=user.principal.actor)
    except TenantryError as exc:
        return show_again(request, platform, slug, "delete", exc)
    platform.router.evict(deletion.store_id)
    return RedirectResponse(f"/console/stores?deleted={quote(slug)}", status_code=303)


@router.post("/stores/{slug}/backup", response_class=HTMLResponse)
def back_up(
    slug: str,
    request: Request,
    form: FormDep,
    user: WriterDep,
    platform: PlatformDep,
    dispatcher: DispatcherDep,
) -> Response:
    """Queue a backup of the store's database (as POST /backups does); its progress shows
    here while a worker takes it."""
    try:
        backup_request.request(
            platform,
            dispatcher,
            storage_for(platform.settings),
            f"store:{slug}",
            label=(form.get("label") or "").strip()[:255] or None,
            pinned=form.get("pin") == "on",
            actor=user.principal.actor,
        )
    except TenantryError as exc:
        return show_again(request, platform, slug, "backup", exc)
    return _back(slug)


@router.post("/stores/{slug}/keys", response_class=HTMLResponse)
def create_key(
    slug: str, request: Request, form: FormDep, user: WriterDep, platform: PlatformDep
) -> Response:
    """Create an API key for the store: the key is on this response only, shown once."""
    try:
        with platform.writer_sessions.begin() as master:
            new = apikeys.create_key(
                master,
                name=(form.get("name") or "").strip()[:255],
                scope=apikeys.Scope.STORE,
                store=stores.get_store(master, slug),
                read_only=form.get("read_only") == "on",
                actor=user.principal.actor,
            )
            plaintext = new.plaintext
    except TenantryError as exc:
        return show_again(request, platform, slug, "keys", exc)
    with platform.sessions() as master:
        return detail_page(request, platform, master, slug, new_key=plaintext, code=201)


@router.post("/stores/{slug}/keys/{prefix}/revoke", response_class=HTMLResponse)
def revoke_key(
    slug: str,
    prefix: str,
    request: Request,
    form: FormDep,
    user: WriterDep,
    platform: PlatformDep,
) -> Response:
    """Revoke one of the store's keys: it stops working at once."""
    try:
        with platform.writer_sessions.begin() as master:
            store = stores.get_store(master, slug)
            found = master.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
            if found is None or found.store_id != store.id:
                raise InvalidInput(
                    f"store {slug!r} has no key {prefix!r}.", "Revoke a key listed on its page."
                )
            apikeys.revoke_key(master, prefix, actor=user.principal.actor)
    except TenantryError as exc:
        return show_again(request, platform, slug, "keys", exc)
    return _back(slug)
