"""``tenantry keys``: rotate the keys that encrypt stored secrets."""

from __future__ import annotations

from typing import Any

import typer
from cryptography.fernet import Fernet, MultiFernet

from tenantry.cli.common import open_platform
from tenantry.cli.output import JSON_OPTION, console, emit_json, reports_errors
from tenantry.crypto import SecretBox, raw_keys, write_key_file
from tenantry.errors import ConfigurationError
from tenantry.services.keys import Resealed, reseal_all
from tenantry.settings import load_settings

app = typer.Typer(
    help="Rotate the encryption keys of stored secrets (server URLs, database passwords).",
    no_args_is_help=True,
)

RESTART_NOTE = (
    "Restart running API servers and workers: they load the keys when they start and cannot "
    "read secrets sealed with a key they do not have."
)
ENV_NOTE = (
    "Keys come from TENANTRY_SECRET_KEYS, which you control: nothing was generated. To rotate, "
    "put a new key (`tenantry keys generate`) first in the variable, keep the old ones after "
    "it, and run `tenantry keys rotate` again. Once everything is resealed under the first "
    "key, the old keys may be removed from the variable."
)


def _counts(result: Resealed) -> dict[str, int]:
    return {
        "servers": result.servers,
        "connections": result.connections,
        "jobs": result.jobs,
        "total": result.total,
    }


@app.command()
@reports_errors
def rotate(
    retire_old: bool = typer.Option(
        False,
        "--retire-old",
        help="Key file only: once everything is resealed, keep only the new key in the file.",
    ),
    json_output: bool = JSON_OPTION,
) -> None:
    """Re-encrypt every stored secret under a new key (all of them or, on error, none).

    With the key file (the default), a new key is generated and put first in the file; the old
    keys stay after it unless --retire-old. With TENANTRY_SECRET_KEYS nothing is generated:
    every secret is resealed under the variable's first key.
    """
    settings = load_settings()
    doc: dict[str, Any] = {}
    with open_platform(settings) as platform:
        if settings.secret_keys is not None:
            if retire_old:
                raise ConfigurationError(
                    "--retire-old works on the key file only; TENANTRY_SECRET_KEYS is yours "
                    "to edit.",
                    "Remove the old keys from the variable once `keys rotate` resealed everything.",
                )
            with platform.writer_sessions.begin() as session:
                result = reseal_all(session, platform.box)
            doc = {"source": "TENANTRY_SECRET_KEYS", "new_key": False, "retired_old": False}
            note = ENV_NOTE
        else:
            old, _ = raw_keys(settings)
            new = Fernet.generate_key()
            write_key_file(settings.key_file, [new, *old])
            try:
                box = SecretBox.from_settings(settings)
                with platform.writer_sessions.begin() as session:
                    result = reseal_all(session, box)
            except BaseException:
                write_key_file(settings.key_file, old)  # nothing was resealed: as before
                raise
            if retire_old:
                # Prove every secret opens with the new key alone before dropping the others.
                only_new = SecretBox(MultiFernet([Fernet(new)]))
                with platform.sessions() as session:
                    try:
                        reseal_all(session, only_new)
                    except ConfigurationError:
                        raise ConfigurationError(
                            "every secret was resealed under the new key, but a secret still "
                            "needs an old key (sealed meanwhile by a running process?); the "
                            "old keys were kept in the file.",
                            "Run `tenantry keys rotate --retire-old` again.",
                        ) from None
                    finally:
                        session.rollback()
                write_key_file(settings.key_file, [new])
            doc = {
                "source": str(settings.key_file),
                "new_key": True,
                "retired_old": retire_old,
                "keys_in_file": 1 if retire_old else 1 + len(old),
            }
            note = RESTART_NOTE
    doc["resealed"] = _counts(result)
    doc["note"] = note
    if json_output:
        emit_json(doc)
        return
    console.print(
        f"[green]✓[/] re-encrypted {result.total} secret(s) ({result.servers} server(s), "
        f"{result.connections} connection(s), {result.jobs} job(s))"
    )
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
