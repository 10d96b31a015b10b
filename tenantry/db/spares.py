"""Spare tenant databases on the server side: make one, hand one to a store, move it into place.

A spare is a copy of the schema's template (:mod:`tenantry.db.builder`) stamped with the
unassigned identity (:data:`tenantry.db.identity.SPARE_ROLE`), called ``tenantry_spare_<hex>``:
a database on a PostgreSQL server, or a file in ``$TENANTRY_DATA_DIR/spares``. MySQL/MariaDB
get none: they have no template copy to make one from quickly, nor a database rename to give
it the store's name. Master's record of the pool is :mod:`tenantry.services.spares`.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection
from sqlalchemy.engine import URL

from tenantry.db import admin, builder, logins, sqlite_writers
from tenantry.db.engines import connect, make_engine
from tenantry.db.identity import stamp_identity, stamp_spare, unstamp_spare
from tenantry.db.master.models import Store
from tenantry.db.schemas import SchemaSpec
from tenantry.db.urls import backend_of
from tenantry.errors import DatabaseAdminError
from tenantry.files import private_dir

SPARE_PREFIX = "tenantry_spare_"
#: The backends a spare pool is kept for.
SPARE_BACKENDS = frozenset({"sqlite", "postgresql"})


def new_spare_name() -> str:
    """A fresh spare database name (a file stem on SQLite)."""
    return f"{SPARE_PREFIX}{uuid.uuid4().hex[:16]}"


def spare_dir(data_dir: Path) -> Path:
    """Where SQLite spares live."""
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
    """A spare just made: stamped unassigned, and on PostgreSQL with its runtime login."""

    #: The password of its runtime login (PostgreSQL), or None (SQLite: no logins).
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
    if backend_of(url) == "sqlite":
        private_dir(Path(url.database or "").parent)
    if not builder.create_tenant_database(url, spec, template_dir):
        admin.drop_database(url)
        return None
    on_server = backend_of(url) == "postgresql"
    password = logins.create_login(url, str(url.database)) if on_server else None
    engine = make_engine(url, pool_size=1)
    try:
        with connect(engine, begin=True) as conn:
            stamp_spare(conn, spec, owner, spare_id)
            if on_server:
                logins.grant_in(conn, url, str(url.database), "service")
    finally:
        engine.dispose()
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
    unstamp_spare(conn, spec, spare_id)
    identity = stamp_identity(conn, spec, owner, table_exists=True)
    if spec.seed is not None:
        spec.seed(conn, {"name": store.name, "slug": store.slug, "id": str(store.id)})
    return identity.instance_id


def move_into_place(spare: URL, target: URL) -> None:
    """Give the (assigned) spare the store's database name: PostgreSQL renames it (no session
    may be open on it), SQLite replaces the file atomically."""
    if backend_of(spare) == "sqlite":
        source, dest = Path(spare.database or ""), Path(target.database or "")
        private_dir(dest.parent)
        os.replace(source, dest)
        for suffix in ("-wal", "-shm"):  # a journal goes with its file, or the data is lost
            side = source.with_name(source.name + suffix)
            if side.exists():
                os.replace(side, dest.with_name(dest.name + suffix))
        source.with_name(source.name + sqlite_writers.LOCK_SUFFIX).unlink(missing_ok=True)
        return
    admin.run_server_sql(
        spare,
        f'ALTER DATABASE "{_checked(spare)}" RENAME TO "{_checked(target)}"',
    )


def _checked(url: URL) -> str:
    name = str(url.database or "")
    if not name or '"' in name or len(name) > 63:
        raise ValueError(f"{name!r} is not a usable database name")
    return name
