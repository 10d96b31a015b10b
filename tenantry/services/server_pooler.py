"""A connection pooler (PgBouncer, transaction mode) in front of a PostgreSQL server.

``servers add/set --pooler-url`` stores the pooler's URL sealed (it may carry a password).
Only stores' runtime connections (the tenant router's) go through it: the store's own
login and database, at the pooler's host and port. Migrations, backups, restores, moves,
fleet runs and admin work keep the server's direct URL (:func:`~.connections.migrator_url`).

In transaction mode a server connection serves many clients, so a pooled connection relies
on no session state: psycopg's server-side prepared statements are turned off and the
statement timeout is not sent as a startup option (set it on the runtime logins' role, or
in PgBouncer, instead).
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.crypto import SecretBox
from tenantry.db.master.models import DatabaseServer, IntegrationConfig, Store
from tenantry.db.urls import backend_of, mask, parse_url, require_driver
from tenantry.errors import InvalidInput
from tenantry.services import audit

#: What ``--pooler-url none`` (or ``null`` in the API) means: no pooler, connect directly.
NONE = "none"


def pooler_url_of(raw: str, server: DatabaseServer | None = None, *, field: str) -> URL:
    """The pooler URL ``raw``, validated: a PostgreSQL URL with a host (its database, user
    and password, if any, are not used for stores' connections)."""
    url = parse_url(raw, setting=field, require_database=False)
    if backend_of(url) != "postgresql" or not url.host:
        raise InvalidInput(
            f"{field} must be a postgresql:// URL with the pooler's host and port.",
            "PgBouncer in transaction mode in front of a PostgreSQL server, e.g. "
            "postgresql://pgbouncer-host:6432/postgres.",
        )
    if server is not None and server.engine != "postgresql":
        raise InvalidInput(
            f"server {server.name!r} is {server.engine}: only PostgreSQL servers take a pooler.",
            f"Leave {field} out for this server.",
        )
    require_driver(url)
    return url


def set_pooler(
    session: Session, box: SecretBox, server: DatabaseServer, url: URL | None, *, actor: str
) -> bool:
    """Put the pooler at ``url`` in front of ``server`` (``None``: none); whether anything
    changed. Stores on the server reopen their engines through it on their next request."""
    old = pooler_url(box, server)
    if old == url:
        return False
    server.pooler_url_encrypted = (
        box.seal(url.render_as_string(hide_password=False)) if url is not None else None
    )
    _reconnect_stores_on(session, server)
    audit.record(
        session,
        actor=actor,
        action="server.set_pooler",
        target_type="database_server",
        target_id=server.name,
        details={"pooler_url": mask(url) if url is not None else None},
    )
    session.flush()
    return True


def pooler_url(box: SecretBox, server: DatabaseServer) -> URL | None:
    """The pooler in front of ``server``, or ``None``."""
    if not server.pooler_url_encrypted:
        return None
    return parse_url(
        box.open(server.pooler_url_encrypted),
        setting=f"server {server.name}'s pooler",
        require_database=False,
    )


def shown_pooler(box: SecretBox, server: DatabaseServer) -> str | None:
    """The pooler URL without its password, for listings."""
    url = pooler_url(box, server)
    return mask(url) if url is not None else None


def through_pooler(store_url: URL, pooler: URL) -> URL:
    """``store_url`` (the store's login and database) at the pooler's host and port."""
    return store_url.set(host=pooler.host, port=pooler.port or 6432)


def _reconnect_stores_on(session: Session, server: DatabaseServer) -> None:
    on_server = select(IntegrationConfig.store_id).where(
        IntegrationConfig.database_server_id == server.id, IntegrationConfig.is_active.is_(True)
    )
    session.execute(
        update(Store)
        .where(Store.id.in_(on_server))
        .values(connection_version=Store.connection_version + 1)
        .execution_options(synchronize_session=False)
    )
