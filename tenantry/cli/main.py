"""Entry point of the ``tenantry`` command."""

from __future__ import annotations

import typer

from tenantry.cli import (
    apikeys,
    backup,
    billing,
    db,
    fleet,
    help_text,
    init_cmd,
    jobs,
    keys,
    provision,
    recover,
    restore,
    serve,
    servers,
    stores,
)
from tenantry.cli.output import JsonUsageGroup
from tenantry.files import restrict_new_files
from tenantry.version import __version__

app = typer.Typer(
    name="tenantry",
    help="Run a master database, a shared billing database and one database per tenant.",
    no_args_is_help=True,
    cls=JsonUsageGroup,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
app.command("init")(init_cmd.init)
app.command("up")(serve.up)
app.command("worker")(serve.worker)
app.add_typer(db.app, name="db")
app.add_typer(fleet.app, name="fleet")
app.add_typer(stores.app, name="stores")
app.command("provision")(provision.provision)
app.add_typer(jobs.app, name="jobs")
app.add_typer(servers.app, name="servers")
app.add_typer(apikeys.app, name="apikeys")
app.add_typer(keys.app, name="keys")
app.add_typer(billing.app, name="billing")
app.add_typer(backup.app, name="backup")
app.command("restore")(restore.restore_command)
app.add_typer(recover.app, name="recover")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tenantry {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """tenantry: master, billing and per-tenant databases, each knowing what it is."""
    restrict_new_files()


help_text.reflow(app)


def main() -> None:
    """Run the CLI."""
    app()
