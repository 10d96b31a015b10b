"""Rotating the keys that encrypt stored secrets: reseal every database, then change the keys.

The use case behind ``tenantry keys rotate``: with the key file (the default), a new key is
generated and put first in the file, every sealed secret of master and billing is resealed
under it (each database in one transaction of its own, see
:mod:`tenantry.services.key_rotation`), and the old keys stay after it unless ``retire_old``.
With ``TENANTRY_SECRET_KEYS`` nothing is generated: every secret is resealed under the
variable's first key. If a later database fails, the ones before it stay resealed and every
key is kept, so running it again finishes the job.

A rotation is an operation (kind ``key_rotate``) run in the process that asked for it, its
progress counted in databases: ``tenantry ops`` lists it, and a cancel is honoured before the
first database is resealed (after that, stopping would leave the secrets under two keys, so
it completes). A process that dies mid-way leaves it to the recovery sweep, which ends it
failed with what to run again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy.orm import Session, sessionmaker

from tenantry.crypto import SecretBox, raw_keys, write_key_file
from tenantry.db.master.models import OperationKind, ProgressUnit
from tenantry.db.schemas import Role
from tenantry.db.types import utcnow
from tenantry.errors import ConfigurationError
from tenantry.operations.running import Running, run_here
from tenantry.runtime import Platform
from tenantry.services.key_rotation import (
    Resealed,
    record_rotation,
    reseal,
    sealed_schemas,
    sealing_work_started_before,
    unreadable,
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


@dataclass
class Rotation:
    """What a rotation did: where the keys are, what was resealed, what to tell the user."""

    source: str
    new_key: bool
    retired_old: bool
    note: str
    keys_in_file: int | None = None
    resealed: list[Resealed] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Secrets resealed in every database."""
        return sum(r.total for r in self.resealed)

    def as_dict(self) -> dict[str, Any]:
        """The rotation as JSON (names and counts only, never a key or a secret)."""
        doc: dict[str, Any] = {
            "source": self.source,
            "new_key": self.new_key,
            "retired_old": self.retired_old,
        }
        if self.keys_in_file is not None:
            doc["keys_in_file"] = self.keys_in_file
        doc["resealed"] = {"total": self.total, **{r.role: r.as_dict() for r in self.resealed}}
        doc["note"] = self.note
        return doc


def _writer_sessions(platform: Platform, role: Role) -> sessionmaker[Session]:
    return {Role.MASTER: platform.writer_sessions, Role.BILLING: platform.billing_writer_sessions}[
        role
    ]


def _readers(platform: Platform, role: Role) -> sessionmaker[Session]:
    return {Role.MASTER: platform.sessions, Role.BILLING: platform.billing_sessions}[role]


def reseal_everywhere(
    platform: Platform,
    box: SecretBox,
    done: list[Resealed],
    running: Running,
    *,
    new_key: bool,
    actor: str,
) -> None:
    """Reseal every database holding secrets, each in its own transaction, appending each
    committed database to ``done``; then record the rotation in master's audit log."""
    schemas = sealed_schemas()
    for n, spec in enumerate(schemas):
        running.step(
            f"resealing {spec.role.value}",
            current=n,
            total=len(schemas),
            unit=ProgressUnit.DATABASES,
            cancellable=not done,
        )
        with _writer_sessions(platform, spec.role).begin() as session:
            result = reseal(session, box, spec)
        done.append(result)
    running.step("recording", current=len(schemas), cancellable=False)
    with platform.writer_sessions.begin() as session:
        record_rotation(session, done, new_key=new_key, actor=actor)


def _ensure_only_new_opens_all(platform: Platform, new: bytes, written: datetime) -> None:
    """Refuse to retire the old keys while any database holds a secret only they open, or
    work that started before the new key was ``written`` may still save one."""
    only_new = SecretBox(MultiFernet([Fernet(new)]))
    left: list[str] = []
    for spec in sealed_schemas():
        with _readers(platform, spec.role)() as session:
            found = unreadable(session, only_new, spec)
        left += [f"{n} in {spec.role.value}'s {column}" for column, n in found.items()]
    # A job that sealed a secret under an old key before the file changed, and saves it once
    # this check is done, would leave it for no key to open: it is still running now.
    with platform.sessions() as session:
        under_way = sealing_work_started_before(session, written)
    left += [f"the {kind} operation(s) under way ({n})" for kind, n in under_way.items()]
    if left:
        raise ConfigurationError(
            "every secret was resealed under the new key, but "
            + ", ".join(left)
            + " still need an old key (sealed meanwhile: by work already under way when the "
            "key file changed, or by a process that does not read this key file); the old keys "
            "were kept in the file.",
            "Run `tenantry keys rotate --retire-old` again once running jobs have finished; if "
            "it is refused again, restart the API servers and workers that use another copy of "
            "the key file.",
        )


def rotate(platform: Platform, *, retire_old: bool = False, actor: str) -> Rotation:
    """Re-encrypt every stored secret, in master and billing, under a new key (see the
    module's docstring); ``retire_old`` (key file only) then keeps only the new key."""
    settings = platform.settings
    if settings.secret_keys is not None and retire_old:
        raise ConfigurationError(
            "--retire-old works on the key file only; TENANTRY_SECRET_KEYS is yours to edit.",
            "Remove the old keys from the variable once `keys rotate` resealed everything.",
        )
    with run_here(
        platform.sessions,
        settings,
        OperationKind.KEY_ROTATE,
        target="secrets",
        requested_by=actor,
    ) as running:
        if settings.secret_keys is not None:
            rotation = Rotation(
                "TENANTRY_SECRET_KEYS", new_key=False, retired_old=False, note=ENV_NOTE
            )
            reseal_everywhere(
                platform, platform.box, rotation.resealed, running, new_key=False, actor=actor
            )
            return rotation
        return _rotate_key_file(platform, running, retire_old=retire_old, actor=actor)


def _rotate_key_file(
    platform: Platform, running: Running, *, retire_old: bool, actor: str
) -> Rotation:
    settings = platform.settings
    old, _ = raw_keys(settings)
    new = Fernet.generate_key()
    rotation = Rotation(
        str(settings.key_file),
        new_key=True,
        retired_old=retire_old,
        note=RESTART_NOTE,
        keys_in_file=1 if retire_old else 1 + len(old),
    )
    write_key_file(settings.key_file, [new, *old])
    written = utcnow()  # work that starts later seals under the new key (SecretBox re-reads)
    box = SecretBox.from_settings(settings)
    try:
        reseal_everywhere(platform, box, rotation.resealed, running, new_key=True, actor=actor)
    except BaseException:
        # Once a database committed, its secrets need the new key: keep every key so both
        # resealed and not-yet-resealed secrets open, and a new run finishes.
        if not rotation.resealed:
            write_key_file(settings.key_file, old)
        raise
    if retire_old:
        running.step("retiring the old keys", cancellable=False)
        _ensure_only_new_opens_all(platform, new, written)
        write_key_file(settings.key_file, [new])
    return rotation
