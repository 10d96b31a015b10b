"""Finding the scratch databases a dead process left: which ones are tenantry's own and unused.

A restore test, a shared-schema store's in-place restore and a row recovery each restore a
backup into a scratch database (:func:`~tenantry.services.backups.verification.scratch_database`,
named ``tenantry_scratch_{purpose}_{first 12 hex digits of the backup's id}``) and drop it in a
``finally``; a process killed inside (SIGKILL, a lost host, a worker stopped by SIGTERM, which
Huey's consumer does not unwind) leaves it on the server. The recovery sweep drops those
(:func:`tenantry.operations.sweep.drop_abandoned_scratch`); this module decides which.

A scratch database is abandoned only when both hold:

- its backup is one of this master's: another installation may share the server (the test
  suite's parallel runs do), and its scratch databases are never touched;
- no live operation uses that backup: a ``backup_verify``, ``restore`` or ``recover_rows``
  operation held under an unexpired lease, or queued for less than a lease (not stalled, as
  :meth:`~tenantry.operations.kit.OperationKit.find_stalled` decides). Such an operation names
  its backup in ``params`` (``backup_id``); one recorded before that names it in its target (a
  restore, a row recovery) or as its parent (a restore test of a tracked take). A live one
  whose backup cannot be told keeps every scratch database until it ends.

Nothing here commits or drops: the sweep owns that.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_, select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db.admin import databases_named
from tenantry.db.master.models import (
    Backup,
    DatabaseServer,
    IntegrationConfig,
    Operation,
    OperationKind,
)
from tenantry.db.shared_schemas import whole_database
from tenantry.db.urls import backend_of
from tenantry.services.backups.targets import sqlite_scratch_dir, sqlite_scratch_server
from tenantry.services.backups.verification import (
    SCRATCH_ID_DIGITS,
    SCRATCH_PREFIX,
    SCRATCH_PURPOSES,
    scratch_url,
)
from tenantry.services.connections import server_url, tenant_url
from tenantry.services.operation_rows import live
from tenantry.services.refs import id_starts_with
from tenantry.settings import Settings

#: The operation kinds that restore a backup into a scratch database.
SCRATCH_KINDS = (OperationKind.BACKUP_VERIFY, OperationKind.RESTORE, OperationKind.RECOVER_ROWS)
#: The key of ``Operation.params`` naming the backup an operation of those kinds uses.
BACKUP_PARAM = "backup_id"

_NAME = re.compile(
    rf"{SCRATCH_PREFIX}(?P<purpose>{'|'.join(SCRATCH_PURPOSES)})_"
    rf"(?P<prefix>[0-9a-f]{{{SCRATCH_ID_DIGITS}}})"
)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def backup_params(backup_id: uuid.UUID) -> dict[str, str]:
    """What an operation restoring backup ``backup_id`` into a scratch database records in its
    ``params``, so the sweep can tell its scratch database is in use."""
    return {BACKUP_PARAM: str(backup_id)}


@dataclass(frozen=True)
class Scratch:
    """A scratch database found on a server."""

    #: The server it was found on (for SQLite, a file in the scratch directory).
    server: URL
    name: str
    purpose: str
    #: The first hex digits of its backup's id.
    prefix: str

    @property
    def url(self) -> URL:
        """Its own URL (the server's login)."""
        return scratch_url(whole_database(self.server), self.name)

    @property
    def where(self) -> str:
        """Where it is, for logs: the server's host and port, or ``sqlite``."""
        if backend_of(self.server) == "sqlite":
            return "sqlite"
        return f"{self.server.host}:{self.server.port or 'default port'}"


def parse_scratch(server: URL, name: str) -> Scratch | None:
    """``name`` as a scratch database of ``server``; None for any other name."""
    found = _NAME.fullmatch(name)
    if found is None:
        return None
    return Scratch(server, name, found["purpose"], found["prefix"])


def scratch_servers(session: Session, box: SecretBox, settings: Settings) -> list[URL]:
    """Every server (and login) scratch databases of this installation may have been made
    with, once each: every registered server's admin login, master's and billing's own, the
    stored login of each store connected with its own URL (not on a registered server; a
    login known not to create databases is left out: its store's are made by a registered
    server's admin), and the data dir's scratch directory for SQLite."""
    urls = [server_url(box, s) for s in session.scalars(select(DatabaseServer))]
    urls += [settings.master_url, settings.billing_url]
    configs = session.scalars(
        select(IntegrationConfig).where(
            IntegrationConfig.is_active.is_(True),
            IntegrationConfig.database_server_id.is_(None),
            or_(IntegrationConfig.can_ddl.is_(None), IntegrationConfig.can_ddl.is_(True)),
        )
    )
    logins: dict[tuple[object, ...], IntegrationConfig] = {}
    for config in configs:  # many stores share a login: each is decrypted once
        data = config.config_data
        if data.get("engine") != "sqlite":
            key = (data.get("driver"), data.get("host"), data.get("port"), data.get("username"))
            logins.setdefault(key, config)
    urls += [tenant_url(box, config) for config in logins.values()]
    servers: dict[tuple[str, str | None, int | None, str | None], URL] = {}
    for url in urls:
        if backend_of(url) != "sqlite":
            key = (backend_of(url), url.host, url.port, url.username)
            servers.setdefault(key, whole_database(url))
    sqlite = [sqlite_scratch_server(settings)] if sqlite_scratch_dir(settings).is_dir() else []
    return [*servers.values(), *sqlite]


def any_scratch_used(session: Session) -> bool:
    """Whether any operation of this master ever restored into a scratch database (if none
    did, none of its scratch databases can be on a server, and no server is listed)."""
    query = select(Operation.id).where(Operation.kind.in_(SCRATCH_KINDS)).limit(1)
    return session.scalar(query) is not None


def find_scratch(server: URL) -> list[Scratch]:
    """The scratch databases on ``server`` (whoever made them)."""
    found = (parse_scratch(server, name) for name in databases_named(server, SCRATCH_PREFIX))
    return [s for s in found if s is not None]


def backups_in_use(session: Session, *, lease: timedelta) -> set[str] | None:
    """The ids (as 32 hex digits) of the backups live operations restore into a scratch
    database; None when a live one does not say which backup it uses."""
    rows = session.execute(
        select(Operation.kind, Operation.params, Operation.parent_id, Operation.target).where(
            Operation.kind.in_(SCRATCH_KINDS), live(lease)
        )
    )
    used: set[str] = set()
    for kind, params, parent_id, target in rows:
        named = _named_backups(kind, params, parent_id, target)
        if not named:
            return None
        used |= named
    return used


def _named_backups(
    kind: str, params: dict[str, object] | None, parent_id: uuid.UUID | None, target: str | None
) -> set[str]:
    named = params.get(BACKUP_PARAM) if isinstance(params, dict) else None
    if isinstance(named, str):
        try:
            return {uuid.UUID(named).hex}
        except ValueError:
            return set()  # unreadable: the caller keeps every scratch database
    if kind == OperationKind.BACKUP_VERIFY:  # a tracked take's id is its backup's
        return {parent_id.hex} if parent_id is not None else set()
    return {uuid.UUID(m).hex for m in _UUID.findall(target or "")}


def known_prefixes(session: Session, prefixes: Iterable[str]) -> set[str]:
    """Those of ``prefixes`` (hex) that some backup of this master's id starts with."""
    known: set[str] = set()
    for prefix in set(prefixes):
        query = select(Backup.id).where(id_starts_with(session, Backup.id, prefix)).limit(1)
        if session.scalar(query) is not None:
            known.add(prefix)
    return known


def abandoned(session: Session, found: list[Scratch], *, lease: timedelta) -> list[Scratch]:
    """Those of ``found`` that are this master's and that no live operation uses (see the
    module's docstring); none while a live operation's backup cannot be told."""
    if not found:
        return []
    in_use = backups_in_use(session, lease=lease)
    if in_use is None:
        return []
    known = known_prefixes(session, (s.prefix for s in found))
    return [
        s for s in found if s.prefix in known and not any(b.startswith(s.prefix) for b in in_use)
    ]
