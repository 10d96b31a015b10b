"""``tenantry keys``: rotate the keys that encrypt stored secrets."""

from __future__ import annotations

from typing import Any

import typer
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy.orm import Session, sessionmaker

from tenantry.cli.common import open_platform
from tenantry.cli.output import JSON_OPTION, console, emit_json, reports_errors
from tenantry.crypto import SecretBox, raw_keys, write_key_file
from tenantry.db.schemas import Role
from tenantry.errors import ConfigurationError
from tenantry.runtime import Platform
from tenantry.services.key_rotation import (
    Resealed,
    record_rotation,
    reseal,
    sealed_schemas,
    unreadable,
)
from tenantry.settings import load_settings

app = typer.Typer(
    help="Rotate the encryption keys of stored secrets (server URLs, database passwords, "
    "webhook signing secrets).",
    no_args_is_help=True,
)

RESTART_NOTE = (
    "Running API servers and workers re-read the key file when it changes: they need no restart."
)
ENV_NOTE = (
    "Keys come from TENANTRY_SECRET_KEYS, which you control: nothing was generated. To rotate, "
    "put a new key (`tenantry keys generate`) first in the variable, keep the old ones after "
    "it, and run `tenantry keys rotate` again. Once everything is resealed under the first "
    "key, the old keys may be removed from the variable."
)


def _writer_sessions(platform: Platform, role: Role) -> sessionmaker[Session]:
    return {Role.MASTER: platform.writer_sessions, Role.BILLING: platform.billing_writer_sessions}[
        role
    ]


def _readers(platform: Platform, role: Role) -> sessionmaker[Session]:
    return {Role.MASTER: platform.sessions, Role.BILLING: platform.billing_sessions}[role]


def _reseal_everywhere(
    platform: Platform, box: SecretBox, done: list[Resealed], *, new_key: bool
) -> None:
    """Reseal every database holding secrets, each in its own transaction, appending each
    committed database to ``done``; then record the rotation in master's audit log."""
    for spec in sealed_schemas():
        with _writer_sessions(platform, spec.role).begin() as session:
            result = reseal(session, box, spec)
        done.append(result)
    with platform.writer_sessions.begin() as session:
        record_rotation(session, done, new_key=new_key)


def _ensure_only_new_opens_all(platform: Platform, new: bytes) -> None:
    """Refuse to retire the old keys while any database holds a secret only they open."""
    only_new = SecretBox(MultiFernet([Fernet(new)]))
    left: list[str] = []
    for spec in sealed_schemas():
        with _readers(platform, spec.role)() as session:
            found = unreadable(session, only_new, spec)
        left += [f"{n} in {spec.role.value}'s {column}" for column, n in found.items()]
    if left:
        raise ConfigurationError(
            "every secret was resealed under the new key, but "
            + ", ".join(left)
            + " still need an old key (sealed meanwhile by a process that has not been "
            "restarted?); the old keys were kept in the file.",
            "Restart running API servers and workers, then run "
            "`tenantry keys rotate --retire-old` again.",
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
    settings = load_settings()
    doc: dict[str, Any] = {}
    done: list[Resealed] = []
    with open_platform(settings) as platform:
        if settings.secret_keys is not None:
            if retire_old:
                raise ConfigurationError(
                    "--retire-old works on the key file only; TENANTRY_SECRET_KEYS is yours "
                    "to edit.",
                    "Remove the old keys from the variable once `keys rotate` resealed everything.",
                )
            _reseal_everywhere(platform, platform.box, done, new_key=False)
            doc = {"source": "TENANTRY_SECRET_KEYS", "new_key": False, "retired_old": False}
            note = ENV_NOTE
        else:
            old, _ = raw_keys(settings)
            new = Fernet.generate_key()
            write_key_file(settings.key_file, [new, *old])
            try:
                _reseal_everywhere(platform, SecretBox.from_settings(settings), done, new_key=True)
            except BaseException:
                # Once a database committed, its secrets need the new key: keep every key so
                # both resealed and not-yet-resealed secrets open, and a new run finishes.
                if not done:
                    write_key_file(settings.key_file, old)
                raise
            if retire_old:
                _ensure_only_new_opens_all(platform, new)
                write_key_file(settings.key_file, [new])
            doc = {
                "source": str(settings.key_file),
                "new_key": True,
                "retired_old": retire_old,
                "keys_in_file": 1 if retire_old else 1 + len(old),
            }
            note = RESTART_NOTE
    total = sum(r.total for r in done)
    doc["resealed"] = {"total": total, **{r.role: r.as_dict() for r in done}}
    doc["note"] = note
    if json_output:
        emit_json(doc)
        return
    console.print(f"[green]✓[/] re-encrypted {total} secret(s)")
    for result in done:
        columns = ", ".join(f"{name}: {n}" for name, n in result.columns.items())
        console.print(f"  {result.role}: {result.total} ({columns})")
    if doc["new_key"]:
        kept = "the old keys were removed" if retire_old else "the old keys remain after it"
        console.print(f"[green]✓[/] new primary key in {doc['source']}; {kept}")
    console.print(f"[dim]{note}[/]")


@app.command()
@reports_errors
def generate(json_output: bool = JSON_OPTION) -> None:
    """Print a new Fernet key (for TENANTRY_SECRET_KEYS); nothing is stored."""
    key = Fernet.generate_key().decode()
    if json_output:
        emit_json({"key": key})
    else:
        typer.echo(key)
