"""How tenant databases are reached: URLs split into a plain part and a sealed secret."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db.master.models import DatabaseServer, IntegrationConfig
from tenantry.db.shared_schemas import schema_url
from tenantry.db.urls import backend_of, parse_url
from tenantry.errors import ConfigurationError


def split_url(box: SecretBox, url: URL) -> tuple[dict[str, Any], str | None]:
    """The non-secret parts of ``url`` (for master's config_data) and its sealed password."""
    backend = backend_of(url)
    if backend == "sqlite":
        return {"engine": "sqlite", "path": url.database}, None
    data: dict[str, Any] = {
        "engine": backend,
        "driver": url.drivername,
        "host": url.host,
        "port": url.port,
        "database": url.database,
        "username": url.username,
    }
    if url.query:
        data["query"] = dict(url.query)
    secret = box.seal(str(url.password)) if url.password is not None else None
    return data, secret


def join_url(box: SecretBox, data: dict[str, Any], secret: str | None) -> URL:
    """Rebuild the URL that :func:`split_url` took apart."""
    if data.get("engine") == "sqlite":
        return parse_url(f"sqlite:///{data['path']}", setting="stored connection")
    try:
        return URL.create(
            data["driver"],
            username=data.get("username"),
            password=box.open(secret) if secret else None,
            host=data.get("host"),
            port=data.get("port"),
            database=data.get("database"),
            query=data.get("query") or {},
        )
    except KeyError as exc:
        raise ConfigurationError(f"a stored connection lacks {exc.args[0]!r}.") from None


def tenant_url(box: SecretBox, config: IntegrationConfig) -> URL:
    """The URL of the store database ``config`` describes."""
    return join_url(box, config.config_data, config.secret_encrypted)


def server_url(box: SecretBox, server: DatabaseServer) -> URL:
    """The admin URL of a registered database server."""
    return parse_url(
        box.open(server.admin_url_encrypted),
        setting=f"server {server.name}",
        require_database=False,  # a MySQL/MariaDB server URL may name no database
    )


def migrator_url(session: Session, box: SecretBox, config: IntegrationConfig) -> URL:
    """The URL that may change the schema of the store database ``config`` describes, for
    migrations, backups, restores, moves and drops: the registered server's admin URL with
    the store's database when tenantry created it on that server, else the stored URL (the
    one the store was connected with). Routing keeps using :func:`tenant_url`. For a store
    in a schema of a shared database, the admin URL is confined to that schema
    (:func:`~tenantry.db.shared_schemas.schema_url`)."""
    if config.database_server_id is not None and config.created_by_tenantry:
        server = session.get(DatabaseServer, config.database_server_id)
    elif config.can_ddl is False:  # a least-privilege URL was given: a server's admin may
        server = matching_server(session, config.config_data)
    else:
        return tenant_url(box, config)
    url = migrator_url_on(box, config.config_data, config.secret_encrypted, server)
    if config.db_schema and server is not None:
        # A store in one schema of a shared database: the admin works in that schema alone.
        return schema_url(url, str(config.config_data["database"]), config.db_schema)
    return url


def matching_server(session: Session, config_data: dict[str, Any]) -> DatabaseServer | None:
    """The active registered server a stored connection's host and port are on, if any (a
    given URL's database can then be migrated, or a scratch copy made, with its admin login)."""
    if config_data.get("engine") in (None, "sqlite"):
        return None
    candidates = session.scalars(
        select(DatabaseServer).where(
            DatabaseServer.engine == config_data["engine"],
            DatabaseServer.host == config_data.get("host"),
            DatabaseServer.is_active.is_(True),
        )
    )
    port = config_data.get("port")
    return next((s for s in candidates if port is None or s.port == port), None)


def migrator_url_on(
    box: SecretBox,
    config_data: dict[str, Any],
    secret: str | None,
    server: DatabaseServer | None,
) -> URL:
    """:func:`migrator_url` from a connection's parts and the server tenantry created its
    database on (``None``: none, or no longer registered; the stored URL is used)."""
    if server is None:
        return join_url(box, config_data, secret)
    return server_url(box, server).set(database=config_data.get("database"))
