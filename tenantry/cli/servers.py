"""``tenantry servers``: the PostgreSQL and MySQL/MariaDB servers tenant databases go on."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import typer
from rich.markup import escape

from tenantry.cli.common import audit_failures, open_platform
from tenantry.cli.output import EXIT_FAILED, JSON_OPTION, console, emit_json, reports_errors
from tenantry.cli.server_drain import drain, rebalance
from tenantry.cli.server_placement import (
    MAX_BYTES_HELP,
    MAX_TENANTS_HELP,
    REGION_HELP,
    TIER_HELP,
    checked_placement_options,
    list_,
    server_document,
    set_,
)
from tenantry.db import builder
from tenantry.db.urls import mask
from tenantry.errors import TenantryError
from tenantry.operations import spare_pool
from tenantry.operations.server_credentials import rotate_server_credentials
from tenantry.services import servers, spares, templates
from tenantry.services.audit import cli_actor
from tenantry.services.connections import server_url
from tenantry.services.servers import ServerCheck
from tenantry.settings import load_settings

app = typer.Typer(
    help="Register and check the database servers tenantry creates store databases on.",
    no_args_is_help=True,
)


def _print_check(check: ServerCheck) -> None:
    if check.ok:
        creates = "may" if check.can_create_databases else "[yellow]may NOT[/]"
        logins = "may" if check.can_create_logins else "[yellow]may NOT[/]"
        console.print(
            f"[green]✓[/] {check.name}: {escape(check.url)} answers "
            f"({escape(check.version or '')}, "
            f"{check.latency_ms or 0:.0f} ms); its user {creates} create databases "
            f"and {logins} create logins"
        )
    else:
        console.print(f"[red]✗[/] {check.name}: {escape(check.url)}: {escape(check.error or '')}")


@app.command()
@reports_errors
def add(
    name: str = typer.Argument(..., help="A short name, e.g. pg-eu-1."),
    url: str = typer.Option(
        ...,
        "--url",
        help="Admin URL whose user may create databases, e.g. postgresql://admin:pw@host:5432 "
        "or mysql://root:pw@host:3306. Stored encrypted.",
    ),
    notes: str | None = typer.Option(None, "--notes", help="A note for operators."),
    region: str | None = typer.Option(None, "--region", help=REGION_HELP),
    tier: str | None = typer.Option(None, "--tier", help=TIER_HELP),
    max_tenants: str | None = typer.Option(None, "--max-tenants", help=MAX_TENANTS_HELP),
    max_bytes: str | None = typer.Option(None, "--max-bytes", help=MAX_BYTES_HELP),
    accepting: bool = typer.Option(
        True, "--accepting/--not-accepting", help="Whether placement may put new stores here."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Register a server after checking tenantry can connect to it.

    Its labels (--region, --tier) and capacity (--max-tenants, --max-bytes, --accepting) are
    what `provision --new` without --server matches and respects; change them later with
    `tenantry servers set`.

    The URL is checked first (port, host, options) and then used to connect; a server that
    cannot be reached is not saved (exit 2). A MySQL/MariaDB URL may name no database; a
    PostgreSQL URL without one uses the postgres maintenance database.
    """
    placement = checked_placement_options(region, tier, max_tenants, max_bytes)
    with (
        open_platform(load_settings()) as platform,
        audit_failures(platform, "server.add", "database_server", name),
        platform.sessions() as session,
    ):
        server, check = servers.add_server(
            session,
            platform.box,
            name=name,
            admin_url=url,
            notes=notes,
            field="--url",
            accepting=accepting,
            actor=cli_actor(),
            **placement,
        )
        session.commit()
        doc: dict[str, Any] = {**server_document(server, check.url), "check": asdict(check)}
    if json_output:
        emit_json(doc)
        return
    console.print(f"[green]✓[/] registered server {name} ({doc['engine']}, {escape(check.url)})")
    _print_check(check)
    if not (check.can_create_databases and check.can_create_logins):
        console.print(
            "[yellow]note:[/] provisioning with --new on this server will fail until its user "
            "may create databases and logins (PostgreSQL: CREATEDB and CREATEROLE; MariaDB: "
            "CREATE and CREATE USER)."
        )


@app.command()
@reports_errors
def remove(
    name: str = typer.Argument(..., help="The server's name."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Unregister a server (on the server, only its spare databases are dropped).

    Refused (exit 1) while stores' databases live there: the stores are named. Move them
    with `tenantry stores move` or delete them first.
    """
    with (
        open_platform(load_settings()) as platform,
        audit_failures(platform, "server.remove", "database_server", name),
    ):
        dropped = spare_pool.remove_server(
            platform.sessions, platform.box, platform.settings, name, actor=cli_actor()
        )
    if json_output:
        emit_json({"removed": name, "spares_dropped": dropped})
        return
    console.print(f"[green]✓[/] removed server {name} ({dropped} spare database(s) dropped)")


@app.command()
@reports_errors
def show(
    name: str = typer.Argument(..., help="The server's name."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Show a server and its spare databases (cloned ahead for new stores; stale ones are of
    an older schema revision and are dropped by the next refill)."""
    with open_platform(load_settings()) as platform, platform.sessions() as session:
        server = servers.get_server(session, name)
        try:
            shown: str | None = mask(server_url(platform.box, server))
        except TenantryError:
            shown = None
        pool = spares.pool(session, server.id)
        count = spares.count(pool, builder.template_name(platform.tenant_spec))
        doc: dict[str, Any] = {
            **server_document(server, shown),
            "spares": {
                "bound": platform.settings.spare_databases,
                **asdict(count),
                "databases": [
                    {"name": s.database_name, "status": s.status, "template": s.template}
                    for s in pool
                ],
            },
        }
    if json_output:
        emit_json(doc)
        return
    console.print(f"{server.name}: {server.engine} at {escape(shown or '(URL unreadable)')}")
    console.print(
        f"spare databases: {count.ready} ready of {doc['spares']['bound']}, "
        f"{count.building} being made or dropped, {count.stale} stale"
    )
    for spare in doc["spares"]["databases"]:
        console.print(f"  {spare['name']}  {spare['status']}  {spare['template']}")


@app.command()
@reports_errors
def check(
    name: str = typer.Argument(..., help="The server's name."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Connect to a server: its version, latency and whether it may create databases.

    Exits 1 when the server cannot be used.
    """
    with open_platform(load_settings()) as platform, platform.sessions() as session:
        result = servers.check_server(platform.box, servers.get_server(session, name))
    if json_output:
        emit_json(asdict(result))
    else:
        _print_check(result)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


@app.command("rotate-credentials")
@reports_errors
def rotate_credentials(
    name: str = typer.Argument(..., help="The server's name."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Give the server's registered admin login a new random password.

    The login changes its own password on the server (PostgreSQL ALTER ROLE CURRENT_USER,
    MySQL ALTER USER CURRENT_USER(), MariaDB SET PASSWORD), a new session proves it, and
    master stores the new URL encrypted, with the store connections that log in as the same
    user. If anything fails after the server accepted it, the old password is put back. The
    password is never shown; sessions already open keep working. Audited.
    """
    with open_platform(load_settings()) as platform:
        rotated = rotate_server_credentials(platform, name, actor=cli_actor())
    if json_output:
        emit_json(asdict(rotated))
        return
    console.print(
        f"[green]✓[/] {name}: new password set and stored ({escape(rotated.url)}); "
        f"{rotated.connections_updated} store connection(s) use it"
    )


@app.command("prune-templates")
@reports_errors
def prune_templates(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Only list what would be dropped; drop nothing."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Drop stale template databases: of older tenant schema revisions, or left by an
    interrupted build (tenantry_tpl_tmp_…), on every registered server and in the SQLite
    template dir.

    The current revision's template, other schemas' templates and any template with open
    connections (a clone or build running now) are kept. Audited. Exits 1 if a drop failed.
    """
    settings = load_settings()
    with (
        open_platform(settings) as platform,
        audit_failures(platform, "server.prune_templates", "template_database"),
        platform.writer_sessions.begin() as session,
    ):
        report = templates.prune(
            session,
            platform.box,
            settings,
            platform.tenant_spec,
            dry_run=dry_run,
            actor=cli_actor(),
        )
    doc: dict[str, Any] = {
        "dry_run": report.dry_run,
        "dropped": [f"{t.where}/{t.name}" for t in report.dropped],
        "kept_in_use": [f"{t.where}/{t.name}" for t in report.in_use],
        "failed": report.failed,
        "unreachable": report.unreachable,
    }
    if json_output:
        emit_json(doc)
    else:
        verb = "would drop" if dry_run else "dropped"
        for name in doc["dropped"]:
            console.print(f"[green]✓[/] {verb} {escape(name)}")
        for name in doc["kept_in_use"]:
            console.print(f"[yellow]![/] kept {escape(name)}: in use now (prune again later)")
        for name, why in report.failed.items():
            console.print(f"[red]✗[/] {escape(name)}: {escape(why)}")
        for name, why in report.unreachable.items():
            console.print(f"[red]✗[/] server {escape(name)} not checked: {escape(why)}")
        if not (report.dropped or report.in_use or report.failed or report.unreachable):
            console.print("no stale template database")
    if report.failed or report.unreachable:
        raise typer.Exit(EXIT_FAILED)


app.command("list")(list_)
app.command("set")(set_)
app.command("drain")(drain)
app.command("rebalance")(rebalance)
