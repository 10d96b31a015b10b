"""Spare tenant databases on the server side: make one, hand one to a store, move it into place.

A spare is a copy of the schema's template (:mod:`tenantry.db.builder`) stamped with the
unassigned identity (:data:`tenantry.db.identity.SPARE_ROLE`), called ``tenantry_spare_<hex>``,
on a PostgreSQL server. MySQL/MariaDB get none: they have no template copy to make one from
quickly, nor a database rename to give it the store's name. SQLite gets none either: a new
store's file is the template copied with its identity and initial data already in it
(:mod:`tenantry.db.sqlite_prepared`), one step, where a spare still needs a move and a
transaction to stamp it (``bench/provision.py`` measured spares slower: 15.0 against 11.3 ms
a store). Spare files an earlier version made in ``$TENANTRY_DATA_DIR/spares`` are dropped by
the next refill. Master's record of the pool is :mod:`tenantry.services.spares`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.engine import URL

from tenantry.db import admin, builder, logins
from tenantry.db.identity import claim_spare, stamp_spare
from tenantry.db.master.models import Store
from tenantry.db.schemas import SchemaSpec
from tenantry.db.server_connections import SERVERS
from tenantry.db.urls import backend_of
from tenantry.errors import DatabaseAdminError

SPARE_PREFIX = "tenantry_spare_"
#: The backends a spare pool is kept for.
SPARE_BACKENDS = frozenset({"postgresql"})


def new_spare_name() -> str:
    """A fresh spare database name (a file stem on SQLite)."""
    return f"{SPARE_PREFIX}{uuid.uuid4().hex[:16]}"


def spare_dir(data_dir: Path) -> Path:
    """Where an earlier version kept SQLite spares (now only dropped)."""
    return data_dir / "spares"


def spare_url(server: URL | None, data_dir: Path, name: str) -> URL:
    """The URL of spare ``name``: on the server of admin URL ``server``, or a SQLite file."""
    if not name.startswith(SPARE_PREFIX):
        raise ValueError(f"{name!r} is not a spare database name")
    if server is None:
        path = (spare_dir(data_dir) / f"{name}.db").resolve()
        return URL.create("sqlite+pysqlite", database=str(path))
    return server.set(database=name)


@dataclass(frozen=True)
class MadeSpare:
    """A spare just made: stamped unassigned, with its runtime login."""

    #: The password of its runtime login.
    login_password: str | None = None


def make_spare(
    url: URL, spec: SchemaSpec, template_dir: Path, owner: str, spare_id: str
) -> MadeSpare | None:
    """Create the spare at ``url`` as a template copy stamped unassigned; None (and nothing
    left) when no template copy could be made there.

    On PostgreSQL the spare also gets its runtime login, named as its database and granted
    ``service`` on it (the grants follow both renames when a store claims it): the login is
    made on the server's pooled connection, and granted in the transaction that stamps the
    spare, on the one session opened in the new database. If this raises, the caller drops
    what is left (the database, :func:`drop_spare_login`)."""
    if backend_of(url) not in SPARE_BACKENDS:
        return None
    if not builder.create_tenant_database(url, spec, template_dir):
        admin.drop_database(url)
        return None
    password = logins.create_login(url, str(url.database))
    with SERVERS.connect(url) as conn, conn.begin():
        stamp_spare(conn, spec, owner, spare_id)
        logins.grant_in(conn, url, str(url.database), "service", new_login=True)
    return MadeSpare(password)


def drop_spare_login(url: URL) -> None:
    """Drop the spare's runtime login, if it has one (after its database)."""
    if backend_of(url) == "postgresql":
        logins.drop_login(url, str(url.database))


def rename_login(admin_url: URL, login: str, to: str) -> bool:
    """Rename the spare's login to the store's ``to`` (its password, a SCRAM verifier, and
    its grants stay); False, nothing changed, when the server refuses (a login ``to`` exists
    already: the caller then gives the store its login the usual way)."""
    logins.check_login_name(login)
    logins.check_login_name(to)
    try:  # on the server's pooled connection: no new session for one statement
        admin.run_server_sql(admin_url, f'ALTER ROLE "{login}" RENAME TO "{to}"')
    except DatabaseAdminError:
        return False
    return True


def assign(conn: Connection, spec: SchemaSpec, owner: str, spare_id: str, store: Store) -> str:
    """Make spare ``spare_id`` on ``conn`` the store's: its unassigned identity replaced by a
    new tenant identity and the initial data written, in the caller's transaction (all or
    nothing); the new instance id."""
    identity = claim_spare(conn, spec, owner, spare_id)
    if spec.seed is not None:
        spec.seed(conn, {"name": store.name, "slug": store.slug, "id": str(store.id)})
    return identity.instance_id


def move_into_place(spare: URL, target: URL) -> None:
    """Give the (assigned) spare the store's database name (no session may be open on it)."""
    admin.run_server_sql(
        spare,
        f'ALTER DATABASE "{_checked(spare)}" RENAME TO "{_checked(target)}"',
    )


def _checked(url: URL) -> str:
    name = str(url.database or "")
    if not name or '"' in name or len(name) > 63:
        raise ValueError(f"{name!r} is not a usable database name")
    return name
