"""``tenantry keys``: rotate the keys that encrypt stored secrets."""

from __future__ import annotations

import typer
from cryptography.fernet import Fernet

from tenantry.cli.common import audit_failures, open_platform
from tenantry.cli.output import JSON_OPTION, console, emit_json, reports_errors
from tenantry.operations import key_rotation
from tenantry.services.audit import cli_actor
from tenantry.settings import load_settings

app = typer.Typer(
    help="Rotate the encryption keys of stored secrets (server URLs, database passwords, "
    "webhook signing secrets).",
    no_args_is_help=True,
)


@app.command()
@reports_errors
def rotate(
    retire_old: bool = typer.Option(
        False,
        "--retire-old",
        help="Key file only: once every database is resealed, keep only the new key in the file.",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Re-encrypt every stored secret, in master and billing, under a new key.

    With the key file (the default), a new key is generated and put first in the file; the old
    keys stay after it unless --retire-old. With TENANTRY_SECRET_KEYS nothing is generated:
    every secret is resealed under the variable's first key. Each database is resealed in one
    transaction (all of its secrets or none); if a later database fails, the ones before it
    stay resealed and every key is kept, so running the command again finishes the job.
    """
    with (
        open_platform(load_settings()) as platform,
        audit_failures(platform, "keys.rotate", "secret_keys"),
    ):
        rotation = key_rotation.rotate(platform, retire_old=retire_old, actor=cli_actor())
    if json_output:
        emit_json(rotation.as_dict())
        return
    console.print(f"[green]✓[/] re-encrypted {rotation.total} secret(s)")
    for result in rotation.resealed:
        columns = ", ".join(f"{name}: {n}" for name, n in result.columns.items())
        console.print(f"  {result.role}: {result.total} ({columns})")
    if rotation.new_key:
        kept = "the old keys were removed" if retire_old else "the old keys remain after it"
        console.print(f"[green]✓[/] new primary key in {rotation.source}; {kept}")
    console.print(f"[dim]{rotation.note}[/]")


@app.command()
@reports_errors
def generate(json_output: bool = JSON_OPTION) -> None:
    """Print a new Fernet key (for TENANTRY_SECRET_KEYS); nothing is stored."""
    key = Fernet.generate_key().decode()
    if json_output:
        emit_json({"key": key})
    else:
        typer.echo(key)
