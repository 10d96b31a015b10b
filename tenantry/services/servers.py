"""Database servers on which tenantry creates tenant databases."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db.engines import connect, make_engine
from tenantry.db.master.models import DatabaseServer
from tenantry.db.urls import backend_of, mask, parse_url, require_driver
from tenantry.errors import Conflict, InvalidInput, NotFound, TenantryError
from tenantry.services import audit
from tenantry.services.connections import server_url

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$")


def add_server(
    session: Session,
    box: SecretBox,
    *,
    name: str,
    admin_url: str,
    notes: str | None = None,
    actor: str = "cli",
) -> DatabaseServer:
    """Register a PostgreSQL or MySQL/MariaDB server by an admin URL (stored encrypted).

    The URL's user must be allowed to create databases. For PostgreSQL the URL may name the
    maintenance database (default ``postgres``); for MySQL no database is needed.
    """
    if not _NAME.match(name):
        raise InvalidInput(
            f"invalid server name {name!r}.",
            "Use 2 to 63 lowercase letters, digits and hyphens.",
        )
    url = _admin_url(admin_url)
    if session.scalar(select(DatabaseServer.id).where(DatabaseServer.name == name)):
        raise Conflict(f"a server named {name!r} is registered already.")
    server = DatabaseServer(
        name=name,
        engine=backend_of(url),
        host=url.host or "localhost",
        port=url.port or (5432 if backend_of(url) == "postgresql" else 3306),
        admin_url_encrypted=box.seal(url.render_as_string(hide_password=False)),
        notes=notes,
    )
    session.add(server)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="server.add",
        target_type="database_server",
        target_id=name,
        details={"url": mask(url)},
    )
    return server


def _admin_url(raw: str) -> URL:
    head, sep, rest = raw.partition("://")
    if sep and "/" not in rest.split("@")[-1]:
        raw = raw + ("/postgres" if head.startswith("postgres") else "/mysql")
    url = parse_url(raw, setting="the server URL")
    require_driver(url)
    if backend_of(url) == "sqlite":
        raise InvalidInput(
            "a database server must be PostgreSQL or MySQL/MariaDB.",
            "SQLite tenant databases need no server: provision with --new and no --server.",
        )
    return url


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


def check_server(box: SecretBox, server: DatabaseServer) -> ServerCheck:
    """Connect with the admin URL, read the version and whether it may create databases."""
    url = server_url(box, server)
    engine = make_engine(url, pool_size=1)
    try:
        started = time.perf_counter()
        with connect(engine) as conn:
            latency = (time.perf_counter() - started) * 1000
            if backend_of(url) == "postgresql":
                version = str(conn.scalar(text("SHOW server_version")))
                can_create = bool(
                    conn.scalar(
                        text(
                            "SELECT rolcreatedb OR rolsuper FROM pg_roles "
                            "WHERE rolname = current_user"
                        )
                    )
                )
            else:
                version = str(conn.scalar(text("SELECT VERSION()")))
                grants = " ".join(str(r[0]) for r in conn.execute(text("SHOW GRANTS")))
                can_create = "ALL PRIVILEGES" in grants or "CREATE" in grants
        return ServerCheck(server.name, mask(url), True, version, can_create, latency, None)
    except TenantryError as exc:
        return ServerCheck(server.name, mask(url), False, None, False, None, exc.message)
    except DBAPIError as exc:  # connected, but a query was refused
        detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        return ServerCheck(server.name, mask(url), False, None, False, None, detail)
    finally:
        engine.dispose()
