"""``tenantry servers list`` and ``servers set``: where stores can go, and how full each server
is (registered on the ``servers`` group by :mod:`tenantry.cli.servers`)."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from tenantry.cli.common import audit_failures, open_platform
from tenantry.cli.output import JSON_OPTION, console, emit_json, reports_errors
from tenantry.db.master.models import DatabaseServer
from tenantry.db.urls import mask
from tenantry.errors import TenantryError
from tenantry.services import placement_labels, server_pooler, servers
from tenantry.services.audit import cli_actor
from tenantry.services.connections import server_url
from tenantry.services.placement_labels import UNCHANGED
from tenantry.services.server_loads import ServerLoad, server_loads
from tenantry.services.usage import human_bytes
from tenantry.settings import load_settings

REGION_HELP = "Region label (e.g. eu, eu-west-1): stores created with --region R go only here."
TIER_HELP = "Tier label (e.g. standard, dedicated), matched against stores' --tier."
MAX_TENANTS_HELP = "Take at most this many stores (`none`: no bound)."
POOLER_HELP = (
    "PgBouncer (transaction mode) in front of this PostgreSQL server, e.g. "
    "postgresql://pgbouncer-host:6432/postgres: stores' runtime connections go through it "
    "(migrations, backups and moves do not). Stored encrypted."
)
MAX_BYTES_HELP = "Take stores while their measured sizes add up to less, e.g. 500GB (`none`)."


def server_document(server: DatabaseServer, shown_url: str | None) -> dict[str, Any]:
    """A server as JSON, without its password: connection, labels and capacity."""
    return {
        "id": str(server.id),
        "name": server.name,
        "engine": server.engine,
        "host": server.host,
        "port": server.port,
        "url": shown_url,
        "is_active": server.is_active,
        "notes": server.notes,
        "created_at": server.created_at,
        "region": server.region,
        "tier": server.tier,
        "max_tenants": server.max_tenants,
        "max_bytes": server.max_bytes,
        "accepting": server.accepting,
        "pooled": server.pooler_url_encrypted is not None,
    }


def load_document(load: ServerLoad, shown_url: str | None) -> dict[str, Any]:
    """:func:`server_document` with what the server holds and may still take."""
    return {
        **server_document(load.server, shown_url),
        "tenants": load.tenants,
        "bytes": load.bytes,
        "tenant_headroom": load.tenant_headroom,
        "byte_headroom": load.byte_headroom,
        "full": load.full,
    }


def _headroom(doc: dict[str, Any]) -> str:
    parts = []
    if doc["tenant_headroom"] is not None:
        room = doc["tenant_headroom"]
        parts.append(f"{room} store" if room == 1 else f"{room} stores")
    if doc["byte_headroom"] is not None:
        parts.append(human_bytes(doc["byte_headroom"]))
    return ", ".join(parts) or "unbounded"


@reports_errors
def list_(json_output: bool = JSON_OPTION) -> None:
    """List registered servers: labels, stores, measured bytes, headroom, whether each
    accepts new stores (URLs with their passwords masked).

    Bytes are the stores' last measured sizes (the scheduler's usage rollup), so the list
    never opens a tenant database.
    """
    with open_platform(load_settings()) as platform, platform.sessions() as session:
        docs = []
        for load in server_loads(session, servers.list_servers(session)):
            try:
                shown: str | None = mask(server_url(platform.box, load.server))
            except TenantryError:
                shown = None  # a key that sealed it is missing; `keys` explains
            docs.append(load_document(load, shown))
    if json_output:
        emit_json(docs)
        return
    if not docs:
        console.print("no servers registered: `tenantry servers add NAME --url URL`.")
        return
    table = Table(title="database servers (URLs: --json or `servers check NAME`)")
    for col in ("name", "engine", "host", "region", "tier", "stores", "bytes", "headroom"):
        table.add_column(col, overflow="fold")
    table.add_column("accepting")
    for d in docs:
        accepting = "yes" if d["accepting"] and d["is_active"] else "[yellow]no[/]"
        table.add_row(
            d["name"],
            d["engine"],
            f"{d['host']}:{d['port']}",
            d["region"] or "-",
            d["tier"] or "-",
            str(d["tenants"]) + (f"/{d['max_tenants']}" if d["max_tenants"] is not None else ""),
            human_bytes(d["bytes"]),
            f"[yellow]{escape(d['full'])}[/]" if d["full"] else _headroom(d),
            accepting,
        )
    console.print(table)


@reports_errors
def set_(
    name: str = typer.Argument(..., help="The server's name."),
    region: str | None = typer.Option(None, "--region", help=REGION_HELP + " `none` clears."),
    tier: str | None = typer.Option(None, "--tier", help=TIER_HELP + " `none` clears."),
    max_tenants: str | None = typer.Option(None, "--max-tenants", help=MAX_TENANTS_HELP),
    max_bytes: str | None = typer.Option(None, "--max-bytes", help=MAX_BYTES_HELP),
    accepting: bool | None = typer.Option(
        None,
        "--accepting/--not-accepting",
        help="Whether placement may put new stores here (stores already there stay).",
    ),
    pooler_url: str | None = typer.Option(
        None, "--pooler-url", help=POOLER_HELP + " `none`: connect directly again."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Change a server's placement labels, capacity or pooler; options not given stay as
    they are.

    --not-accepting stops placement from choosing the server (its stores stay and keep
    working). A new label is not checked against the stores already there; moves are.
    Audited.
    """

    def given(value: Any, parse: Any, field: str) -> Any:
        return UNCHANGED if value is None else parse(value, field=field)

    changes: dict[str, Any] = {
        "region": given(region, placement_labels.label, "--region"),
        "tier": given(tier, placement_labels.label, "--tier"),
        "max_tenants": given(max_tenants, placement_labels.tenant_count, "--max-tenants"),
        "max_bytes": given(max_bytes, placement_labels.size_bytes, "--max-bytes"),
        "accepting": UNCHANGED if accepting is None else accepting,
    }
    with (
        open_platform(load_settings()) as platform,
        audit_failures(platform, "server.set", "database_server", name),
        platform.writer_sessions.begin() as session,
    ):
        server = servers.get_server(session, name)
        changed = placement_labels.configure_server(session, server, **changes, actor=cli_actor())
        if pooler_url is not None:
            pooler = (
                None
                if pooler_url.strip().lower() == server_pooler.NONE
                else server_pooler.pooler_url_of(pooler_url, server, field="--pooler-url")
            )
            if server_pooler.set_pooler(session, platform.box, server, pooler, actor=cli_actor()):
                changed["pooler_url"] = "cleared" if pooler is None else mask(pooler)
        (load,) = server_loads(session, [server])
        doc = load_document(load, None)
    if json_output:
        emit_json({**doc, "changed": sorted(changed)})
        return
    if not changed:
        console.print(f"server {name}: nothing to change")
        return
    shown = ", ".join(f"{k} {_shown(v)}" for k, v in changed.items())
    console.print(f"[green]✓[/] server {name}: {escape(shown)}")


def _shown(value: object) -> str:
    if value is None:
        return "cleared"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def checked_placement_options(
    region: str | None, tier: str | None, max_tenants: str | None, max_bytes: str | None
) -> dict[str, Any]:
    """``servers add``'s placement options, checked (each error names its option)."""
    return {
        "region": placement_labels.label(region, field="--region"),
        "tier": placement_labels.label(tier, field="--tier"),
        "max_tenants": placement_labels.tenant_count(max_tenants, field="--max-tenants"),
        "max_bytes": placement_labels.size_bytes(max_bytes, field="--max-bytes"),
    }
