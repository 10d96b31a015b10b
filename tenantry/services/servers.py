"""Database servers on which tenantry creates tenant databases."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from sqlalchemy import func, or_, select, text, union
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db.engines import connect, make_engine
from tenantry.db.master.models import (
    ACTIVE_STATUSES,
    DatabaseServer,
    IntegrationConfig,
    ProvisioningJob,
    ProvisioningStatus,
    Store,
    StoreMove,
)
from tenantry.db.savepoints import insert_in_savepoint
from tenantry.db.types import utcnow
from tenantry.db.urls import backend_of, mask, parse_url, redact, require_driver
from tenantry.errors import Conflict, InvalidInput, NotFound, TenantryError
from tenantry.services import audit
from tenantry.services.connections import server_url
from tenantry.services.placement import SQLITE

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$")
#: A job in one of these states may still create a database on its server.
_UNFINISHED_JOBS = (ProvisioningStatus.QUEUED, ProvisioningStatus.RUNNING)


def add_server(
    session: Session,
    box: SecretBox,
    *,
    name: str,
    admin_url: str,
    notes: str | None = None,
    actor: str,
    field: str = "url",
    region: str | None = None,
    tier: str | None = None,
    max_tenants: int | None = None,
    max_bytes: int | None = None,
    accepting: bool = True,
) -> tuple[DatabaseServer, ServerCheck]:
    """Register a PostgreSQL or MySQL/MariaDB server by an admin URL (stored encrypted).

    The one way a server is registered (CLI and API): the URL is validated, then tenantry
    connects with it; a server that cannot be reached is refused and nothing is saved.
    ``field`` names the URL in errors (``--url``, ``url``). The URL's user should be allowed
    to create databases (the check says whether it is). For PostgreSQL the URL may name the
    maintenance database (default ``postgres``); a MySQL/MariaDB URL needs no database and,
    without one, is kept and used without one. ``region``, ``tier`` and the capacity bounds
    (checked by :mod:`.placement_labels`) are what placement matches and respects.
    """
    if name == SQLITE:
        raise InvalidInput(
            f"{SQLITE!r} cannot name a server: `provision --server {SQLITE}` means a SQLite file.",
            "Pick another name, e.g. pg-eu-1.",
        )
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(
            "invalid server name.",
            "Use 2 to 63 lowercase letters, digits and hyphens, starting and ending with a "
            "letter or digit.",
        )
    url = admin_url_of(admin_url, field=field)
    if session.scalar(select(DatabaseServer.id).where(DatabaseServer.name == name)):
        raise Conflict(f"a server named {name!r} is registered already.")
    check = check_url(name, url)
    if not check.ok:
        raise InvalidInput(
            f"server {name!r} was not saved: {check.error}",
            "Check the URL (host, port, user, password) and that the server is running.",
        )
    server = DatabaseServer(
        name=name,
        engine=backend_of(url),
        host=url.host or "localhost",
        port=url.port or (5432 if backend_of(url) == "postgresql" else 3306),
        admin_url_encrypted=box.seal(url.render_as_string(hide_password=False)),
        notes=notes,
        region=region,
        tier=tier,
        max_tenants=max_tenants,
        max_bytes=max_bytes,
        accepting=accepting,
    )
    if insert_in_savepoint(session, server) is not None:  # the check took a while: a race
        raise Conflict(f"a server named {name!r} is registered already.")
    audit.record(
        session,
        actor=actor,
        action="server.add",
        target_type="database_server",
        target_id=name,
        details={
            "url": mask(url),
            "region": region,
            "tier": tier,
            "max_tenants": max_tenants,
            "max_bytes": max_bytes,
            "accepting": accepting,
        },
    )
    return server, check


def admin_url_of(raw: str, *, field: str = "url") -> URL:
    """The admin URL ``raw`` of a server, validated; PostgreSQL's defaults to ``/postgres``."""
    url = parse_url(raw, setting=field, require_database=False)
    if backend_of(url) == "sqlite":
        raise InvalidInput(
            f"{field} must be the URL of a PostgreSQL or MySQL/MariaDB server, not SQLite.",
            "SQLite tenant databases need no server: provision with --new and no --server.",
        )
    require_driver(url)
    if backend_of(url) == "postgresql" and not url.database:
        # libpq would otherwise pick a database named after the user, which rarely exists.
        url = url.set(database="postgres")
    return url


def remove_server(session: Session, name: str, *, actor: str) -> None:
    """Unregister the server ``name``; refused while any store's database lives there.

    A store's database lives on a server while a connection (active, or a moved store's
    kept source) points at it, a provisioning job may create one there, or a move is copying
    one there. Nothing on the server itself is dropped here (its spare databases are dropped
    first by :func:`tenantry.operations.spare_pool.remove_server`).
    """
    server = get_server(session, name)
    refuse_removal(session, server)
    session.delete(server)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="server.remove",
        target_type="database_server",
        target_id=name,
        details={},
    )


#: The stores a refused removal names (the others are counted).
NAMED_STORES = 20


def refuse_removal(session: Session, server: DatabaseServer) -> None:
    """Raise :class:`Conflict` naming the stores whose databases live on ``server``."""
    name = server.name
    count, slugs = _stores_on(session, server)
    if count:
        more = count - len(slugs)
        shown = ", ".join(slugs) + (f" and {more} more" if more > 0 else "")
        raise Conflict(
            f"server {name!r} holds the databases of {count} store(s): {shown}.",
            "Move them (`tenantry stores move SLUG --to-server OTHER`) or delete the stores "
            "first; a moved store's source database counts until its keep-until date.",
        )


def _stores_on(session: Session, server: DatabaseServer) -> tuple[int, list[str]]:
    """How many stores have a database (or one being made, or a kept source) on ``server``,
    and the first :data:`NAMED_STORES` of their slugs (counted by the database, never all
    read: a server may hold thousands)."""
    kept_source = (
        select(StoreMove.id)
        .where(
            StoreMove.from_config_id == IntegrationConfig.id,
            StoreMove.keep_source_until > utcnow(),
        )
        .exists()
    )
    on_server = union(
        select(IntegrationConfig.store_id).where(
            IntegrationConfig.database_server_id == server.id,
            or_(IntegrationConfig.is_active.is_(True), kept_source),
        ),
        select(ProvisioningJob.store_id).where(
            ProvisioningJob.database_server_id == server.id,
            ProvisioningJob.status.in_(_UNFINISHED_JOBS),
        ),
        select(StoreMove.store_id).where(
            StoreMove.to_server == server.name,
            StoreMove.operation_status.in_(ACTIVE_STATUSES),
        ),
    ).subquery()
    on_it = Store.id.in_(select(on_server.c[0]))
    count = session.scalar(select(func.count()).select_from(Store).where(on_it)) or 0
    if not count:
        return 0, []
    named = select(Store.slug).where(on_it).order_by(Store.slug).limit(NAMED_STORES)
    return count, list(session.scalars(named))


def list_servers(session: Session) -> list[DatabaseServer]:
    """Every registered server, by name."""
    return list(session.scalars(select(DatabaseServer).order_by(DatabaseServer.name)))


def get_server(session: Session, name: str) -> DatabaseServer:
    """The server called ``name``."""
    server = session.scalar(select(DatabaseServer).where(DatabaseServer.name == name))
    if server is None:
        raise NotFound(f"no database server {name!r}.", "List them with `tenantry servers list`.")
    return server


@dataclass(frozen=True)
class ServerCheck:
    """Whether tenantry can use a server."""

    name: str
    url: str
    ok: bool
    version: str | None
    can_create_databases: bool
    latency_ms: float | None
    error: str | None
    #: Whether its user may create logins (each create-new store gets runtime logins).
    can_create_logins: bool = False


def check_server(box: SecretBox, server: DatabaseServer) -> ServerCheck:
    """Connect with the admin URL, read the version and whether it may create databases."""
    return check_url(server.name, server_url(box, server))


def check_url(name: str, url: URL) -> ServerCheck:
    """Connect to ``url`` as server ``name``: version, latency, may its user create databases."""
    engine = make_engine(url, pool_size=1)
    try:
        started = time.perf_counter()
        with connect(engine) as conn:
            latency = (time.perf_counter() - started) * 1000
            if backend_of(url) == "postgresql":
                version = str(conn.scalar(text("SHOW server_version")))
                row = conn.execute(
                    text(
                        "SELECT rolcreatedb OR rolsuper, rolcreaterole OR rolsuper FROM pg_roles "
                        "WHERE rolname = current_user"
                    )
                ).one()
                can_create, can_login = bool(row[0]), bool(row[1])
            else:
                version = str(conn.scalar(text("SELECT VERSION()")))
                grants = " ".join(str(r[0]) for r in conn.execute(text("SHOW GRANTS")))
                can_create = "ALL PRIVILEGES" in grants or "CREATE" in grants
                can_login = "ALL PRIVILEGES ON *.*" in grants or "CREATE USER" in grants
        return ServerCheck(name, mask(url), True, version, can_create, latency, None, can_login)
    except TenantryError as exc:
        return ServerCheck(name, mask(url), False, None, False, None, exc.message)
    except DBAPIError as exc:  # connected, but a query was refused
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        return ServerCheck(name, mask(url), False, None, False, None, redact(detail))
    finally:
        engine.dispose()


def record_rotated_credentials(
    session: Session, box: SecretBox, server: DatabaseServer, new_url: URL, *, actor: str
) -> int:
    """Store ``new_url`` (same login, new password) as ``server``'s admin URL, sealed.

    Store connections on this server that log in as the same user (create-new databases made
    with the admin login) get the new password too, and their stores' connection version is
    bumped so every process reopens its engine with it. Returns how many connections were
    updated. Audited without the password.
    """
    server.admin_url_encrypted = box.seal(new_url.render_as_string(hide_password=False))
    sealed = box.seal(str(new_url.password)) if new_url.password is not None else None
    configs = session.scalars(
        select(IntegrationConfig).where(IntegrationConfig.database_server_id == server.id)
    ).all()
    updated = 0
    for config in configs:
        data = config.config_data or {}
        if data.get("username") != new_url.username or data.get("host") != new_url.host:
            continue  # a login of its own (per-tenant user): not the admin's password
        config.secret_encrypted = sealed
        updated += 1
        if config.is_active:
            store = session.get(Store, config.store_id)
            if store is not None:
                store.connection_version += 1  # every process drops its engine for the store
    audit.record(
        session,
        actor=actor,
        action="server.rotate_credentials",
        target_type="database_server",
        target_id=server.name,
        details={"url": mask(new_url), "connections_updated": updated},
    )
    session.flush()
    return updated
