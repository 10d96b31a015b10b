"""``tenantry apikeys``: keys for the HTTP API: create (shown once), list, revoke."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from tenantry.cli.common import audit_failures, open_platform, when
from tenantry.cli.output import JSON_OPTION, console, emit_json, reports_errors
from tenantry.errors import InvalidInput
from tenantry.services import apikeys, stores
from tenantry.services.apikeys import Scope
from tenantry.services.audit import cli_actor
from tenantry.settings import load_settings

app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)


@app.command()
@reports_errors
def create(
    admin: bool = typer.Option(False, "--admin", help="A key for the whole platform."),
    store: str | None = typer.Option(None, "--store", help="A key for one store (slug or id)."),
    app_id: str | None = typer.Option(None, "--app", help="A key for one app's billing data."),
    name: str = typer.Option("", "--name", help="What the key is for."),
    read_only: bool = typer.Option(
        False, "--read-only", help="The key reads what its scope reaches and changes nothing."
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Create an API key and print it ONCE: only its hash is stored.

    Send it as 'Authorization: Bearer <key>'.
    """
    if sum((admin, store is not None, app_id is not None)) != 1:
        raise InvalidInput("give exactly one of --admin, --store SLUG or --app APP_ID.")
    scope = Scope.ADMIN if admin else Scope.STORE if store is not None else Scope.APP
    with (
        open_platform(load_settings()) as platform,
        audit_failures(platform, "apikey.create", "api_key"),
        platform.writer_sessions.begin() as session,
    ):
        target = stores.get_store(session, store) if store is not None else None
        new = apikeys.create_key(
            session,
            name=name,
            scope=scope,
            store=target,
            app_id=app_id,
            read_only=read_only,
            actor=cli_actor(),
        )
        doc = {
            "key": new.plaintext,
            "prefix": new.key.prefix,
            "scope": scope.value,
            "name": new.key.name,
            "store": target.slug if target is not None else None,
            "app_id": app_id,
            "read_only": read_only,
        }
    if json_output:
        emit_json(doc)
        return
    kind = f"read-only {scope.value}" if read_only else scope.value
    console.print(f"[green]✓[/] created {kind} API key {doc['prefix']} ({doc['name']})")
    console.print("the key (shown once, store it now):")
    typer.echo(new.plaintext)


@app.command("list")
@reports_errors
def list_(json_output: bool = JSON_OPTION) -> None:
    """List API keys by prefix: name, scope, store, created, last used, revoked."""
    with open_platform(load_settings()) as platform, platform.sessions() as session:
        rows = apikeys.list_keys(session)
        docs: list[dict[str, Any]] = [
            {
                "prefix": key.prefix,
                "name": key.name,
                "scope": ",".join(key.scopes),
                "store": slug,
                "app_id": key.app_id,
                "created_at": key.created_at,
                "last_used_at": key.last_used_at,
                "expires_at": key.expires_at,
                "revoked_at": key.revoked_at,
            }
            for key, slug in rows
        ]
    if json_output:
        emit_json(docs)
        return
    if not docs:
        console.print("no API keys: `tenantry apikeys create --admin`.")
        return
    table = Table(title="API keys")
    for col in ("prefix", "name", "scope", "store/app", "created", "last used", "revoked"):
        table.add_column(col, overflow="fold")
    for d in docs:
        table.add_row(
            d["prefix"],
            d["name"],
            d["scope"],
            d["store"] or d["app_id"] or "-",
            when(d["created_at"]),
            when(d["last_used_at"]),
            f"[red]{when(d['revoked_at'])}[/]" if d["revoked_at"] else "-",
        )
    console.print(table)


@app.command()
@reports_errors
def revoke(
    prefix: str = typer.Argument(..., help="The key's prefix (from `apikeys list`)."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Revoke an API key: it stops working at once."""
    with (
        open_platform(load_settings()) as platform,
        audit_failures(platform, "apikey.revoke", "api_key", prefix),
        platform.writer_sessions.begin() as session,
    ):
        key = apikeys.revoke_key(session, prefix, actor=cli_actor())
        doc = {"prefix": key.prefix, "name": key.name, "revoked_at": key.revoked_at}
    if json_output:
        emit_json(doc)
    else:
        console.print(f"[green]✓[/] revoked API key {prefix}")
