"""``tenantry users``: platform users (owners, operators, viewers) and their passwords."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.table import Table

from tenantry.cli.common import open_platform, when
from tenantry.cli.output import JSON_OPTION, console, emit_json, reports_errors
from tenantry.db.master.models import User
from tenantry.errors import InvalidInput
from tenantry.services import users
from tenantry.services.audit import cli_actor
from tenantry.settings import load_settings

app = typer.Typer(
    help="Add, list, disable and enable platform users; reset their passwords.",
    no_args_is_help=True,
)

EMAIL = typer.Argument(..., help="The user's email address.")
PASSWORD_STDIN = typer.Option(
    False,
    "--password-stdin",
    help="Read the password from the first line of standard input instead of asking twice.",
)


def _password(from_stdin: bool) -> str:
    """The new password: stdin's first line, or asked twice without echo (never an argument,
    which would land in the shell's history and in every process listing)."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not sys.stdin.isatty():
        raise InvalidInput(
            "no terminal to ask for the password on.", "Pipe it in with --password-stdin."
        )
    else:
        password = str(typer.prompt("password", hide_input=True, confirmation_prompt=True))
    users.check_password(password)
    return password


def user_document(user: User) -> dict[str, Any]:
    """What ``users list --json`` prints of a user (never the password hash)."""
    return {
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "active": user.is_active,
        "last_login_at": user.last_login_at,
        "created_at": user.created_at,
    }


@app.command()
@reports_errors
def add(
    email: str = EMAIL,
    role: str = typer.Option(..., "--role", help="owner, operator or viewer."),
    name: str | None = typer.Option(
        None, "--name", help="The user's name (default: the email's local part)."
    ),
    password_stdin: bool = PASSWORD_STDIN,
    json_output: bool = JSON_OPTION,
) -> None:
    """Add a platform user; the password is asked for twice (or read with --password-stdin).

    Owners and operators can do everything through the API; viewers can read everything and
    change nothing.
    """
    chosen = users.role_of(role)
    users.normalise_email(email)  # a typo is reported before the password is asked for
    password = _password(password_stdin)
    with open_platform(load_settings()) as platform, platform.writer_sessions.begin() as session:
        doc = user_document(
            users.add_user(
                session, email=email, password=password, role=chosen, name=name, actor=cli_actor()
            )
        )
    if json_output:
        emit_json(doc)
    else:
        console.print(f"[green]✓[/] added {doc['role']} {doc['email']}")


@app.command("list")
@reports_errors
def list_(json_output: bool = JSON_OPTION) -> None:
    """List platform users: email, name, role, active, last login."""
    with open_platform(load_settings()) as platform, platform.sessions() as session:
        docs = [user_document(u) for u in users.list_users(session)]
    if json_output:
        emit_json(docs)
        return
    if not docs:
        console.print("no users: `tenantry users add EMAIL --role owner`.")
        return
    table = Table(title="users")
    for col in ("email", "name", "role", "active", "last login", "created"):
        table.add_column(col, overflow="fold")
    for d in docs:
        table.add_row(
            d["email"],
            d["name"],
            d["role"],
            "yes" if d["active"] else "[red]disabled[/]",
            when(d["last_login_at"]),
            when(d["created_at"]),
        )
    console.print(table)


def _set_active(email: str, active: bool, json_output: bool) -> None:
    with open_platform(load_settings()) as platform, platform.writer_sessions.begin() as session:
        doc = user_document(users.set_active(session, email, active, actor=cli_actor()))
    if json_output:
        emit_json(doc)
    else:
        console.print(f"[green]✓[/] {'enabled' if active else 'disabled'} {doc['email']}")


@app.command()
@reports_errors
def disable(email: str = EMAIL, json_output: bool = JSON_OPTION) -> None:
    """Disable a user: they cannot sign in, and their sessions end at once."""
    _set_active(email, False, json_output)


@app.command()
@reports_errors
def enable(email: str = EMAIL, json_output: bool = JSON_OPTION) -> None:
    """Enable a disabled user again."""
    _set_active(email, True, json_output)


@app.command("reset-password")
@reports_errors
def reset_password(
    email: str = EMAIL, password_stdin: bool = PASSWORD_STDIN, json_output: bool = JSON_OPTION
) -> None:
    """Set a user's new password (asked twice, or --password-stdin); their sessions end."""
    users.normalise_email(email)
    password = _password(password_stdin)
    with open_platform(load_settings()) as platform, platform.writer_sessions.begin() as session:
        doc = user_document(users.reset_password(session, email, password, actor=cli_actor()))
    if json_output:
        emit_json(doc)
    else:
        console.print(f"[green]✓[/] new password set for {doc['email']}; their sessions ended")
