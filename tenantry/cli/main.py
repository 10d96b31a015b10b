"""Entry point of the ``tenantry`` command.

Command groups are imported when they run, not when the command starts: ``tenantry
--version`` and ``tenantry --help`` import Typer and nothing of tenantry's heavy parts
(SQLAlchemy models, Alembic, Huey), and ``tenantry fleet status`` imports only what ``fleet``
needs. The one-line help the root lists for each group is kept here, beside where to find it;
``tests/cli/test_lazy_commands.py`` keeps it equal to the group's own.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from typing import Any

import typer
from typer.core import TyperCommand

from tenantry.cli import help_text
from tenantry.cli.output import JsonUsageGroup
from tenantry.files import restrict_new_files
from tenantry.version import __version__


@dataclass(frozen=True)
class Entry:
    """Where a command or group lives, and the line ``tenantry --help`` shows for it."""

    module: str
    attribute: str
    help: str


#: Every command and group of ``tenantry``, in the order ``--help`` lists them. A new command
#: group is one line here and one module under ``tenantry/cli/``.
COMMANDS: dict[str, Entry] = {
    "init": Entry(
        "tenantry.cli.init_cmd",
        "init",
        "Create the data dir, the key file and the master and billing databases at head.",
    ),
    "up": Entry(
        "tenantry.cli.serve",
        "up",
        "Initialise if needed, then serve the API with a job worker beside it.",
    ),
    "worker": Entry(
        "tenantry.cli.serve",
        "worker",
        "Run provisioning jobs from the queue until stopped (Ctrl-C waits for running jobs).",
    ),
    "provision": Entry(
        "tenantry.cli.provision",
        "provision",
        "Create (--new) or connect (--connect URL) a store's database and build its tables.",
    ),
    "restore": Entry(
        "tenantry.cli.restore",
        "restore_command",
        "Restore a backup into a database, after showing the plan.",
    ),
    "db": Entry(
        "tenantry.cli.db", "app", "Inspect and migrate one database (master, billing or a tenant)."
    ),
    "fleet": Entry("tenantry.cli.fleet", "app", "Migrate and check every tenant database."),
    "stores": Entry("tenantry.cli.stores", "app", "Create, inspect and manage stores (tenants)."),
    "jobs": Entry("tenantry.cli.jobs", "app", "Follow and cancel provisioning jobs."),
    "ops": Entry(
        "tenantry.cli.ops",
        "app",
        "List, follow and cancel operations of every kind (provisioning, fleet runs, backups…).",
    ),
    "servers": Entry(
        "tenantry.cli.servers",
        "app",
        "Register and check the database servers tenantry creates store databases on.",
    ),
    "import": Entry(
        "tenantry.cli.imports",
        "app",
        "Import data from outside tenantry: a shared database into stores, legacy billing tables.",
    ),
    "apikeys": Entry("tenantry.cli.apikeys", "app", "Create, list and revoke API keys."),
    "access": Entry(
        "tenantry.cli.access",
        "app",
        "Database logins for people and tools: read-only, service or admin (seed 004).",
    ),
    "users": Entry(
        "tenantry.cli.users",
        "app",
        "Add, list, disable and enable platform users; reset their passwords.",
    ),
    "keys": Entry(
        "tenantry.cli.keys",
        "app",
        "Rotate the encryption keys of stored secrets (server URLs, database passwords, "
        "webhook signing secrets).",
    ),
    "billing": Entry(
        "tenantry.cli.billing",
        "app",
        "Billing: processor webhooks, their signing secrets, and customers.",
    ),
    "backup": Entry(
        "tenantry.cli.backup", "app", "Take, list, verify and prune backups of every database."
    ),
    "audit": Entry(
        "tenantry.cli.audit",
        "app",
        "Read, export and prune the audit log (who did what, to what, and how it ended).",
    ),
    "report": Entry(
        "tenantry.cli.report",
        "app",
        "Reports over every database: sizes per database and per table.",
    ),
    "recover": Entry(
        "tenantry.cli.recover",
        "app",
        "Recover data from a backup without restoring the whole database.",
    ),
    "doctor": Entry(
        "tenantry.cli.doctor",
        "doctor",
        "Check the installation as the runbooks would; each problem with the command that "
        "fixes it.",
    ),
    "metrics": Entry(
        "tenantry.cli.metrics",
        "app",
        "Prometheus alert rules for tenantry's metrics (seed 004's thresholds).",
    ),
}


def load(name: str) -> Any:
    """The Click command of ``tenantry NAME``, its module imported now."""
    entry = COMMANDS[name]
    target = getattr(importlib.import_module(entry.module), entry.attribute)
    # Built as part of a group, as the root would: a Typer of one command stays a group.
    holder = typer.Typer()
    holder.callback()(_nothing)
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name)(target)
    help_text.reflow(holder)
    return typer.main.get_command(holder).commands[name]  # type: ignore[attr-defined]


def _nothing() -> None:
    """Stands in for the root's callback while one command is built."""


class LazyGroup(JsonUsageGroup):
    """The root group: lists every command from :data:`COMMANDS`, imports one when it runs."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        """Every command name, in the order of :data:`COMMANDS`."""
        return [*super().list_commands(ctx), *(n for n in COMMANDS if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The command ``cmd_name``: while the root's help is written, only its line."""
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        if self._listing:
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name].help)
        command = load(cmd_name)
        self.add_command(command, cmd_name)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """The root's help, which lists the commands without importing them."""
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="tenantry",
    help="Run a master database, a shared billing database and one database per tenant.",
    no_args_is_help=True,
    cls=LazyGroup,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


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
    try:
        app()
    except BrokenPipeError:
        # The reader went away (``tenantry jobs list | head``): stop quietly, as ``cat`` does;
        # stdout is pointed at /dev/null so flushing it at exit cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
