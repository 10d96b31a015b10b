"""Which database a backup is of: master, billing or one store's tenant database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db.identity import Identity, expect
from tenantry.db.master.models import Backup, DatabaseServer, IntegrationConfig, Store
from tenantry.db.probe import probe
from tenantry.db.schemas import Role, SchemaSpec, billing_schema, master_schema, tenant_schema
from tenantry.db.server_connections import SERVERS
from tenantry.db.shared_schemas import schema_url
from tenantry.db.urls import mask, parse_url
from tenantry.errors import Conflict, InvalidInput, NotFound
from tenantry.files import private_dir
from tenantry.services.connections import matching_server, server_url, tenant_url
from tenantry.services.fleet_targets import tenant_databases
from tenantry.settings import Settings

STORE_PREFIX = "store:"


@dataclass(frozen=True)
class BackupTarget:
    """One database to back up or restore, and what it must say it is."""

    spec: SchemaSpec
    url: URL
    store_id: uuid.UUID | None = None
    slug: str | None = None
    #: The identity master recorded for a store's database (tenants only).
    instance_id: str | None = None

    @property
    def role(self) -> str:
        """``master``, ``billing`` or ``tenant``."""
        return self.spec.role.value

    @property
    def scope(self) -> str:
        """``master``, ``billing`` or ``store:<slug>``: how commands and policies name it."""
        return scope_name(self.role, self.slug)


def scope_name(role: str, slug: str | None) -> str:
    """``master``, ``billing`` or ``store:<slug>``: how commands and policies name a database."""
    return f"{STORE_PREFIX}{slug}" if slug else role


def scope_of(backup: Backup) -> str:
    """The scope of the database ``backup`` was taken of."""
    return scope_name(backup.role, backup.slug)


def parse_scope(ref: str) -> tuple[Role, str | None]:
    """``master``, ``billing`` or ``store:SLUG`` as (role, slug)."""
    ref = ref.strip()
    if ref in ("master", "billing"):
        return Role(ref), None
    if ref.startswith(STORE_PREFIX) and len(ref) > len(STORE_PREFIX):
        return Role.TENANT, ref[len(STORE_PREFIX) :]
    raise InvalidInput(
        f"{ref!r} is not a database: use master, billing or store:SLUG.",
        "For example: tenantry backup run --db store:acme",
    )


def resolve(session: Session, box: SecretBox, settings: Settings, ref: str) -> BackupTarget:
    """The database ``ref`` (``master``, ``billing`` or ``store:SLUG``) names."""
    role, slug = parse_scope(ref)
    if role is Role.MASTER:
        return BackupTarget(master_schema(), settings.master_url)
    if role is Role.BILLING:
        return BackupTarget(billing_schema(), settings.billing_url)
    assert slug is not None
    return tenant_targets(session, box, settings, [slug])[0]


def tenant_targets(
    session: Session, box: SecretBox, settings: Settings, slugs: list[str] | None = None
) -> list[BackupTarget]:
    """Every active store's database (only ``slugs`` when given)."""
    spec = tenant_schema(settings.tenant_schema)
    return [
        BackupTarget(spec, t.url, t.store_id, t.slug, t.instance_id)
        for t in tenant_databases(session, box, slugs)
    ]


def identify(
    target: BackupTarget,
    *,
    instance_id: str | None = None,
    why: str | None = None,
    hint: str | None = None,
) -> tuple[Identity, str | None]:
    """The target's identity and revision, after checking it is the database it should be.

    It must be the target's role and schema, and the instance master recorded for a store
    (or ``instance_id`` when given: the backup's own instance, for a recovery).
    """
    where = f"store {target.slug}'s database" if target.slug else f"the {target.role} database"
    with SERVERS.connect(target.url) as conn:
        identity, revision = probe(conn, target.spec)
        checked = expect(
            conn,
            target.spec,
            where=f"{mask(target.url)} ({where})",
            instance_id=instance_id or target.instance_id,
            identity=identity,
            why=why,
            hint=hint
            or "Check the URL settings (or the store's connection in master) before backing it up.",
        )
    return checked, revision


def scratch_server(session: Session, box: SecretBox, settings: Settings, backup: Backup) -> URL:
    """A URL on the server where a scratch copy of ``backup`` can be restored.

    Master and billing backups go to their own server; a store's to the server its database
    is on now, with the admin credentials of the registered server it was created on or whose
    host it is on; else with the store's own login, unless that login is known not to be able
    to (``can_ddl`` false): a :class:`Conflict` saying what to do. SQLite
    backups need no server: a file in the data dir.
    """
    if backup.engine == "sqlite":
        private_dir(sqlite_scratch_dir(settings))
        return sqlite_scratch_server(settings)
    if backup.role == Role.MASTER:
        return settings.master_url
    if backup.role == Role.BILLING:
        return settings.billing_url
    config = (
        session.query(IntegrationConfig)
        .filter_by(store_id=backup.store_id, is_active=True)
        .one_or_none()
    )
    if config is None:
        raise NotFound(
            f"store {backup.slug} has no active database to find a server for the scratch copy.",
            "Restore the backup with --target URL to a database you create.",
        )
    server = (
        session.get(DatabaseServer, config.database_server_id)
        if config.database_server_id is not None
        else matching_server(session, config.config_data)
    )
    if server is not None and config.db_schema:
        # The dump holds one schema of a shared database: the scratch copy is checked in it.
        return schema_url(server_url(box, server), "postgres", config.db_schema)
    if server is not None:
        return server_url(box, server)
    problem = _scratch_problem(session, config)
    if problem is not None:
        raise Conflict(
            f"store {backup.slug}'s {problem}.",
            "Register the server with `tenantry servers add` (its admin login is then used "
            "for scratch copies), or restore the backup with --target URL to check it.",
        )
    return tenant_url(box, config)


def sqlite_scratch_dir(settings: Settings) -> Path:
    """The directory of the scratch copies of SQLite backups (in the data dir)."""
    return settings.data_dir / "scratch"


def sqlite_scratch_server(settings: Settings) -> URL:
    """The "server" of SQLite scratch copies: each is a file beside this URL's (never
    created) file in :func:`sqlite_scratch_dir`."""
    return parse_url(f"sqlite:///{sqlite_scratch_dir(settings) / 'scratch.db'}")


def scratch_problems(session: Session) -> dict[str, str]:
    """Why no scratch copy of a store's backups can be restored (so none can be verified),
    by ``store:<slug>`` scope, for the stores where none can (one query: only least-privilege
    connections can lack a place)."""
    rows = session.execute(
        select(Store.slug, IntegrationConfig)
        .join(IntegrationConfig, IntegrationConfig.store_id == Store.id)
        .where(IntegrationConfig.is_active.is_(True), IntegrationConfig.can_ddl.is_(False))
    )
    found = {}
    for slug, config in rows:
        problem = _scratch_problem(session, config)
        if problem is not None:
            found[f"{STORE_PREFIX}{slug}"] = problem
    return found


def _scratch_problem(session: Session, config: IntegrationConfig) -> str | None:
    if config.database_server_id is not None or config.can_ddl is not False:
        return None
    if matching_server(session, config.config_data) is not None:
        return None
    return (
        "login may not create databases, and no registered server is on its host "
        f"({config.config_data.get('host')}): there is nowhere to restore a scratch copy to "
        "check its backups"
    )
