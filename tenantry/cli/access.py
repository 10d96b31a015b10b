"""``tenantry access``: database logins for people and tools, at seed 004's three levels."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from tenantry.cli.common import open_platform, when
from tenantry.cli.output import JSON_OPTION, console, emit_json, reports_errors
from tenantry.db.master.models import AccessRole
from tenantry.operations.access_roles import grant_access, revoke_access
from tenantry.services import access
from tenantry.services.audit import cli_actor
from tenantry.settings import load_settings

app = typer.Typer(
    help="Database logins for people and tools: read-only, service or admin (seed 004).",
    no_args_is_help=True,
)


@app.command()
@reports_errors
def grant(
    db: str = typer.Option(
        ..., "--db", help="master, billing, store:SLUG or all-tenants (every active store)."
    ),
    level: str = typer.Option(
        ...,
        "--as",
        help="readonly (SELECT), service (SELECT/INSERT/UPDATE/DELETE, no DDL) or admin (all).",
    ),
    name: str | None = typer.Option(
        None, "--name", help="The login's name (lower-case letters, digits, _); default generated."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Create a database login with one access level and print its credentials once.

    The login is created on the server of each database (PostgreSQL or MySQL/MariaDB; SQLite
    has no logins: not applicable) and granted the level there; the server enforces it. The
    password is shown here only: tenantry keeps the role's name, scope and level in master
    and the audit log, never its password. all-tenants covers the stores active now; a store
    provisioned later needs a grant of its own.
    """
    with open_platform(load_settings()) as platform:
        granted = grant_access(platform, db, level, name, actor=cli_actor())
    if json_output:
        emit_json(asdict(granted))
        return
    console.print(
        f"[green]✓[/] login {granted.name} ({granted.level}) on {len(granted.urls)} "
        "database(s). Its password is shown this once and not stored:"
    )
    for url in granted.urls:
        console.print(escape(url), soft_wrap=True, highlight=False)
    if granted.skipped:
        console.print(
            f"[yellow]note:[/] skipped SQLite databases (no logins): {', '.join(granted.skipped)}"
        )


def _document(role: AccessRole) -> dict[str, Any]:
    return {
        "name": role.name,
        "scope": role.scope,
        "level": role.level,
        "servers": role.servers,
        "databases": role.databases,
        "created_by": role.created_by,
        "created_at": role.created_at,
        "revoked_at": role.revoked_at,
    }


@app.command("list")
@reports_errors
def list_(
    include_revoked: bool = typer.Option(False, "--all", help="Include revoked roles."),
    json_output: bool = JSON_OPTION,
) -> None:
    """List the access roles (never their passwords)."""
    with open_platform(load_settings()) as platform, platform.sessions() as session:
        docs = [_document(r) for r in access.list_roles(session, include_revoked=include_revoked)]
    if json_output:
        emit_json(docs)
        return
    if not docs:
        console.print("no access roles: `tenantry access grant --db … --as …`.")
        return
    table = Table(title="access roles")
    for col in ("name", "scope", "level", "databases", "created", "revoked"):
        table.add_column(col, overflow="fold")
    for d in docs:
        table.add_row(
            d["name"],
            escape(d["scope"]),
            d["level"],
            escape(", ".join(d["databases"])),
            when(d["created_at"]),
            when(d["revoked_at"]) if d["revoked_at"] else "",
        )
    console.print(table)


@app.command()
@reports_errors
def revoke(
    name: str = typer.Argument(..., help="The role's login name."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Drop the role's login on every server it was created on (its sessions end) and mark
    it revoked in master; audited."""
    with open_platform(load_settings()) as platform:
        dropped = revoke_access(platform, name, actor=cli_actor())
    if json_output:
        emit_json({"revoked": name, "dropped_on": dropped})
        return
    console.print(f"[green]✓[/] revoked {name}: login dropped on {', '.join(dropped)}")
