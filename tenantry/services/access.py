"""Access roles (seed 004): which databases a scope names, and master's record of each role.

The logins themselves are created, granted and dropped on the servers by
:mod:`tenantry.db.logins`; here is what tenantry knows about them. A scope is ``master``,
``billing``, ``store:SLUG`` or ``all-tenants`` (every active store's database when the role
is granted). Each database is reached through the login that may create roles there: the
``DATABASE_URL*`` login for master and billing, a registered server's admin URL for a store
database tenantry created on it, or the store's own URL for one it was connected to.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db.master.models import AccessRole, DatabaseServer, IntegrationConfig
from tenantry.db.types import utcnow
from tenantry.db.urls import backend_of
from tenantry.errors import Conflict, InvalidInput, NotFound
from tenantry.services import audit
from tenantry.services.connections import server_url, tenant_url
from tenantry.services.fleet_targets import tenant_databases
from tenantry.services.stores import active_connection, get_store
from tenantry.settings import Settings

ALL_TENANTS = "all-tenants"
SCOPE_FORMS = "master, billing, store:SLUG or all-tenants"
NOT_APPLICABLE = (
    "database roles are not applicable to SQLite: a SQLite file has no users or grants."
)


@dataclass(frozen=True)
class AccessTarget:
    """One database of a scope and the login that grants on it."""

    admin_url: URL
    database: str
    label: str  # ``master``, ``billing`` or the store's slug


def server_key(url: URL) -> str:
    """The server of ``url`` without credentials: ``backend://host:port``."""
    backend = backend_of(url)
    port = url.port or (5432 if backend == "postgresql" else 3306)
    return f"{backend}://{url.host or 'localhost'}:{port}"


def scope_targets(
    session: Session, box: SecretBox, settings: Settings, scope: str
) -> tuple[list[AccessTarget], list[str]]:
    """The server databases ``scope`` names, and the SQLite ones it leaves out (labels).

    A scope with no server database at all is refused as not applicable.
    """
    candidates: list[tuple[URL, str, str]] = []  # (admin URL, database, label)
    if scope in ("master", "billing"):
        url = settings.master_url if scope == "master" else settings.billing_url
        candidates.append((url, url.database or "", scope))
    elif scope.startswith("store:") and len(scope) > len("store:"):
        store = get_store(session, scope[len("store:") :])
        config = active_connection(session, store)
        if config is None:
            raise NotFound(
                f"store {store.slug!r} has no database yet.",
                f"Provision it first: tenantry provision {store.slug} --new.",
            )
        candidates.append(_store_candidate(session, box, config, store.slug))
    elif scope == ALL_TENANTS:
        for tenant in tenant_databases(session, box):
            store = get_store(session, tenant.slug)
            config = active_connection(session, store)
            if config is not None:
                candidates.append(_store_candidate(session, box, config, tenant.slug))
    else:
        raise InvalidInput(f"unknown --db {scope[:80]!r}.", f"Use {SCOPE_FORMS}.")
    targets = [
        AccessTarget(url, database, label)
        for url, database, label in candidates
        if backend_of(url) != "sqlite"
    ]
    skipped = [label for url, _, label in candidates if backend_of(url) == "sqlite"]
    if not targets:
        raise InvalidInput(
            NOT_APPLICABLE
            if skipped
            else "no active store database to grant on: all-tenants names none yet.",
            "Protect SQLite files with file-system permissions; database roles apply to "
            "PostgreSQL and MySQL/MariaDB."
            if skipped
            else "Provision stores first.",
        )
    return targets, skipped


def _store_candidate(
    session: Session, box: SecretBox, config: IntegrationConfig, slug: str
) -> tuple[URL, str, str]:
    url = tenant_url(box, config)
    if config.database_server_id is not None:
        server = session.get(DatabaseServer, config.database_server_id)
        if server is not None:  # created on a registered server: its admin grants
            return server_url(box, server), url.database or "", slug
    return url, url.database or "", slug  # connected: only its own URL is known


def admin_urls(
    session: Session, box: SecretBox, settings: Settings, servers: list[str]
) -> list[URL]:
    """One URL that may drop logins on each of ``servers`` (server keys) tenantry can reach:
    the master and billing logins, registered servers' admins, then stores' own URLs."""
    found: dict[str, URL] = {}
    urls = [settings.master_url, settings.billing_url]
    urls += [server_url(box, server) for server in session.scalars(select(DatabaseServer))]
    urls += [tenant.url for tenant in tenant_databases(session, box)]
    for url in urls:
        if backend_of(url) != "sqlite" and server_key(url) in servers:
            found.setdefault(server_key(url), url)
    return list(found.values())


def default_name(level: str) -> str:
    """A fresh login name for ``level``: ``readonly_1a2b3c4d``."""
    return f"{level}_{secrets.token_hex(4)}"


def active_role(session: Session, name: str) -> AccessRole | None:
    """The role ``name`` that is not revoked, if any."""
    return session.scalar(
        select(AccessRole).where(AccessRole.name == name, AccessRole.revoked_at.is_(None))
    )


def ensure_free(session: Session, name: str) -> None:
    """Refuse ``name`` while an active role has it."""
    if active_role(session, name) is not None:
        raise Conflict(
            f"an access role named {name!r} exists already.",
            "Choose another --name, or revoke it first: tenantry access revoke NAME.",
        )


def get_active_role(session: Session, name: str) -> AccessRole:
    """The active role ``name``, or :class:`NotFound`."""
    role = active_role(session, name)
    if role is None:
        raise NotFound(
            f"no active access role {name[:40]!r}.", "List them with `tenantry access list`."
        )
    return role


def list_roles(session: Session, *, include_revoked: bool = False) -> list[AccessRole]:
    """The roles, newest first (only active ones unless ``include_revoked``)."""
    query = select(AccessRole).order_by(AccessRole.created_at.desc(), AccessRole.name)
    if not include_revoked:
        query = query.where(AccessRole.revoked_at.is_(None))
    return list(session.scalars(query))


def record_grant(
    session: Session,
    *,
    name: str,
    scope: str,
    level: str,
    targets: list[AccessTarget],
    actor: str,
) -> AccessRole:
    """Record a granted role in master and the audit log (never its password)."""
    ensure_free(session, name)
    servers = sorted({server_key(t.admin_url) for t in targets})
    databases = [t.database for t in targets]
    role = AccessRole(
        name=name,
        scope=scope,
        level=level,
        servers=servers,
        databases=databases,
        created_by=actor,
    )
    session.add(role)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="access.grant",
        target_type="access_role",
        target_id=name,
        details={"scope": scope, "level": level, "servers": servers, "databases": databases},
    )
    return role


def record_revoke(session: Session, role: AccessRole, *, dropped_on: list[str], actor: str) -> None:
    """Mark ``role`` revoked and audit it."""
    role.revoked_at = utcnow()
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="access.revoke",
        target_type="access_role",
        target_id=role.name,
        details={"scope": role.scope, "level": role.level, "dropped_on": dropped_on},
    )
