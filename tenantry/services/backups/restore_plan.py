"""Planning a restore: which backup, from when, into what and how, refused when the target
is another role's database, another instance, or a different engine. Nothing changes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.backup.dump_tools import database_label
from tenantry.crypto import SecretBox
from tenantry.db.admin import database_exists
from tenantry.db.engines import connect, make_engine, sqlite_path
from tenantry.db.identity import Identity, expect
from tenantry.db.master.models import Backup, IntegrationConfig, Store
from tenantry.db.schemas import Role, SchemaSpec, schema_for
from tenantry.db.shared_schemas import schema_of
from tenantry.db.urls import backend_of, mask, parse_url
from tenantry.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    WrongDatabase,
)
from tenantry.services import placement
from tenantry.services.backups.verification import (
    get_backup,
    require_good,
)
from tenantry.services.connections import migrator_url
from tenantry.services.write_blocks import active_block
from tenantry.settings import Settings


@dataclass
class RestorePlan:
    """What a restore would do; shown before anything changes."""

    backup_id: uuid.UUID
    backup_role: str
    backup_slug: str | None
    backup_taken_at: str
    backup_revision: str | None
    target: URL
    target_shown: str
    in_place: bool
    #: The target holds data now: replacing it needs the name typed and a safety backup.
    live: bool
    #: What the user must type (or pass to --confirm) to replace a live target.
    confirm_name: str
    method: str
    target_identity: str | None
    store_id: uuid.UUID | None = None
    notes: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The plan as JSON, without the target's credentials."""
        return {
            "backup": str(self.backup_id),
            "role": self.backup_role,
            "store": self.backup_slug,
            "taken_at": self.backup_taken_at,
            "schema_revision": self.backup_revision,
            "target": self.target_shown,
            "in_place": self.in_place,
            "live_target": self.live,
            "confirm_name": self.confirm_name,
            "method": self.method,
            "target_identity": self.target_identity,
            "notes": self.notes,
        }


METHODS = {
    "postgresql": "restored into a new database, then swapped in by renaming (one transaction)",
    "mysql": "restored into a new database, then every table moved in one RENAME TABLE",
    "sqlite": "restored into a staging file, checked, then copied in by SQLite's backup API",
}


#: How a shared-schema store is restored in place (:mod:`.restore_schema`).
SCHEMA_METHOD = (
    "restored into a staging schema of its shared database, checked, then swapped in by "
    "renaming schemas (one transaction); the neighbours' schemas are not touched"
)


def _own_url(session: Session, box: SecretBox, settings: Settings, backup: Backup) -> URL:
    if backup.role == Role.MASTER:
        return settings.master_url
    if backup.role == Role.BILLING:
        return settings.billing_url
    store = session.get(Store, backup.store_id) if backup.store_id else None
    config = (
        session.query(IntegrationConfig)
        .filter_by(store_id=backup.store_id, is_active=True)
        .one_or_none()
    )
    if store is None or config is None:
        raise NotFound(
            f"store {backup.slug} (of backup {backup.id}) has no database to restore in place.",
            "Restore it with --target URL into a database you choose.",
        )
    blocked = active_block(store)
    if blocked is not None:
        raise Conflict(
            f"store {backup.slug}'s writes are blocked ({blocked}); it cannot be restored now.",
            "Wait for the move or restore in progress to finish (tenantry stores show).",
        )
    if config.instance_id and config.instance_id != backup.instance_id:
        raise WrongDatabase(
            f"store {backup.slug}'s database is now instance {config.instance_id}, the backup "
            f"is of instance {backup.instance_id}; restoring it in place would swap in "
            "another database.",
            "Restore it with --target URL, then point the store at it deliberately.",
        )
    return migrator_url(session, box, config)


def _inspect_target(url: URL, spec: SchemaSpec, backup: Backup) -> tuple[bool, Identity | None]:
    """Whether the target exists, and its identity once the guard found it to be the backup's
    own database (``None``: an empty one). Never creates it."""
    path = sqlite_path(url)
    exists = path.is_file() if path is not None else database_exists(url)
    if not exists:
        return False, None
    engine = make_engine(url, pooled=False)
    try:
        with connect(engine) as conn:
            identity = expect(
                conn,
                spec,
                where=mask(url),
                instance_id=backup.instance_id,
                why=f"backup {backup.id} never lands in another role's or another instance's "
                "database, nor over tables a restore would destroy",
                hint="Restore it into the backup's own database (--in-place) or into a new, "
                "empty database.",
                empty_ok=True,
            )
    finally:
        engine.dispose()
    return True, identity


def plan_restore(
    session: Session,
    box: SecretBox,
    settings: Settings,
    backup_ref: str,
    *,
    target: str | None,
    in_place: bool,
) -> RestorePlan:
    """Check a restore of ``backup_ref`` into ``target`` (or in place) and describe it.

    Refuses a bad backup, a target of another engine, role or instance, a non-empty
    database without tenantry identity, and a store's backup restored where the store's
    residency does not allow (:mod:`~tenantry.services.placement`). Changes nothing.
    """
    if in_place == (target is not None):
        raise InvalidInput(
            "give exactly one of --target URL or --in-place.",
            "--in-place replaces the backup's own database; --target restores elsewhere.",
        )
    backup = get_backup(session, backup_ref)
    require_good(backup)
    url = (
        _own_url(session, box, settings, backup)
        if in_place
        else parse_url(target or "", setting="--target")
    )
    if not in_place and backup.store_id is not None:
        # The store's data may only be copied where its residency allows (checked before the
        # target is even opened).
        store = session.get(Store, backup.store_id)
        if store is not None:
            placement.refuse_url_breaking_residency(
                session, store, url, doing="restore its backup into"
            )
    shown = mask(url)
    exists, identity = _inspect_target(url, schema_for(backup.role, settings.tenant_schema), backup)
    if backend_of(url) != backup.engine:
        raise InvalidInput(
            f"backup {backup.id} is a {backup.engine} dump; {shown} is {backend_of(url)}.",
            "Restore into a database of the same engine (to change engines, move the store: "
            "tenantry stores move).",
        )
    live = identity is not None  # the guard refused tables without identity
    notes = []
    if live:
        notes.append("the target holds data: a pinned safety backup of it is taken first")
    if not exists:
        notes.append("the target database does not exist yet: it will be created")
    return RestorePlan(
        backup_id=backup.id,
        backup_role=backup.role,
        backup_slug=backup.slug,
        backup_taken_at=backup.started_at.isoformat(timespec="seconds"),
        backup_revision=backup.schema_revision,
        target=url,
        target_shown=shown,
        in_place=in_place,
        live=live,
        confirm_name=schema_of(url) or database_label(url),
        method=SCHEMA_METHOD if schema_of(url) else METHODS[backup.engine],
        target_identity=identity.describe() if identity else None,
        store_id=backup.store_id if in_place else None,
        notes=notes,
    )
