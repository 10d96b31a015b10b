"""``tenantry stores rotate-credentials``: new passwords for stores' runtime logins, with no
failed request during the switch (registered on the ``stores`` group by
:mod:`tenantry.cli.stores`)."""

from __future__ import annotations

import typer

from tenantry.cli.common import open_platform
from tenantry.cli.output import EXIT_FAILED, JSON_OPTION, console, emit_json, reports_errors
from tenantry.errors import InvalidInput
from tenantry.operations import credential_rotation
from tenantry.services.audit import cli_actor
from tenantry.settings import load_settings


@reports_errors
def rotate_credentials(
    slug: str | None = typer.Argument(None, help="The store's slug (or id)."),
    all_stores: bool = typer.Option(
        False,
        "--all",
        help="Every active store with a runtime login, and every store still served with its "
        "server's admin login (given its first runtime login).",
    ),
    older_than: str | None = typer.Option(
        None,
        "--older-than",
        help="With --all: only stores whose password is older than this (e.g. 90d, 12h).",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Give stores' runtime database logins new passwords, without interrupting requests.

    Each store created on a registered server has two logins (`<name>_a`, `<name>_b`)
    with the same grants. A rotation sets a new password on the one the store does not use,
    switches the store to it and tells every process to reconnect; the previous one keeps
    its password until the next rotation, so connections already open finish their work.
    Each store's rotation is an operation (`tenantry ops list --kind store_credentials`) and
    an audit entry; no password is ever printed. Workers rotate stores older than
    TENANTRY_CREDENTIAL_ROTATION_DAYS (default 90) on their own. A store provisioned before
    runtime logins existed (served with the server's admin login) is given its first login
    the same way, by slug or with --all (workers do not convert stores on their own). With
    --all, one store's
    failure does not stop the others; the exit code is 1 when any failed.
    """
    if (slug is None) == (not all_stores):
        raise InvalidInput("give either a store's slug or --all.", "See --help.")
    if older_than is not None and not all_stores:
        raise InvalidInput("--older-than goes with --all.", "Drop it, or rotate --all.")
    age = credential_rotation.parse_age(older_than) if older_than else None
    with open_platform(load_settings()) as platform:
        if slug is not None:
            outcomes = [credential_rotation.rotate_store(platform, slug, actor=cli_actor())]
        else:
            due = credential_rotation.due_stores(platform, older_than=age, legacy=True)
            outcomes = credential_rotation.rotate_many(platform, due, actor=cli_actor())
    failed = [o for o in outcomes if o.error is not None]
    if json_output:
        emit_json({"items": [o.document() for o in outcomes], "failed": len(failed)})
    else:
        if not outcomes:
            console.print("no store's credentials are due for rotation")
        for outcome in outcomes:
            if outcome.error is None:
                kept = (
                    f"login {outcome.previous} stays valid until the next rotation"
                    if outcome.previous
                    else "its first runtime login; the server's admin login is no longer used"
                )
                now = f"store {outcome.slug}: now login {outcome.login}"
                console.print(f"[green]✓[/] {now} ({kept})")
            else:
                console.print(f"[red]✗[/] store {outcome.slug}: {outcome.error}")
    if failed:
        raise typer.Exit(EXIT_FAILED)
