"""The identity row every managed database carries, and the guard that reads it first.

A database's identity says what it is (role, schema, instance id, owner app). Commands that
change a schema, restore data or move data call :func:`guard` before touching anything, so a
billing migration pointed at the master database is refused with nothing changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, Connection, MetaData, RowMapping, String, Table, inspect, select

from tenantry.db.schemas import SchemaSpec
from tenantry.db.types import UTCDateTime, utcnow
from tenantry.errors import NotOwner, UnidentifiedDatabase, WrongDatabase
from tenantry.version import __version__

IDENTITY_TABLE = "tenantry_identity"

_identity_metadata = MetaData()
identity_table = Table(
    IDENTITY_TABLE,
    _identity_metadata,
    Column("role", String(16), primary_key=True),
    Column("schema_name", String(64), nullable=False),
    Column("instance_id", String(36), nullable=False),
    Column("owner_app", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("tenantry_version", String(32), nullable=False),
)


@dataclass(frozen=True)
class Identity:
    """What a database says it is."""

    role: str
    schema_name: str
    instance_id: str
    owner_app: str
    created_at: datetime

    def describe(self) -> str:
        """A short human description, e.g. ``a master database (schema master, instance …)``."""
        return (
            f"a {self.role} database (schema {self.schema_name}, instance {self.instance_id}, "
            f"owner {self.owner_app})"
        )


def is_tenantry_table(name: str) -> bool:
    """Tables tenantry itself keeps in every database (identity, versions, checksums)."""
    return name.startswith("tenantry_")


def read_identity(conn: Connection) -> Identity | None:
    """The database's identity, or ``None`` when it has none. Never writes."""
    if not inspect(conn).has_table(IDENTITY_TABLE):
        return None
    return identity_from_rows(conn.execute(select(identity_table)).mappings().all())


def identity_from_rows(rows: Sequence[RowMapping]) -> Identity | None:
    """The identity the rows of ``tenantry_identity`` state (refusing several at once)."""
    if not rows:
        return None
    if len(rows) > 1:
        roles = ", ".join(sorted(r["role"] for r in rows))
        raise WrongDatabase(
            f"the database claims several roles at once ({roles}); refusing to touch it.",
            "Inspect the tenantry_identity table and keep only the row that is true.",
        )
    r = rows[0]
    return Identity(r["role"], r["schema_name"], r["instance_id"], r["owner_app"], r["created_at"])


def user_tables(conn: Connection) -> list[str]:
    """Tables in the database that are not tenantry's own bookkeeping."""
    return sorted(t for t in inspect(conn).get_table_names() if not is_tenantry_table(t))


def guard(conn: Connection, spec: SchemaSpec, *, where: str = "the database") -> Identity | None:
    """Check that ``conn`` is a database of ``spec``'s role before anything changes it.

    Returns the identity, or ``None`` for an empty database that may be stamped. Raises
    :class:`WrongDatabase` when the identity names another role or schema, and
    :class:`UnidentifiedDatabase` for a non-empty database without identity. Only reads.
    """
    identity = read_identity(conn)
    if identity is None:
        tables = user_tables(conn)
        if not tables:
            return None
        shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
        raise UnidentifiedDatabase(
            f"expected a {spec.role} database at {where}, found a database with {len(tables)} "
            f"table(s) ({shown}) and no tenantry identity; nothing was changed.",
            f"If it really is the {spec.role} database, adopt it first: "
            f"tenantry db adopt --role {spec.role}.",
        )
    if identity.role != spec.role or identity.schema_name != spec.name:
        raise WrongDatabase(
            f"expected a {spec.role} database (schema {spec.name}) at {where}, found "
            f"{identity.describe()}; nothing was changed.",
            "Check the URL settings: each role must point at its own database.",
        )
    return identity


def check_owner(spec: SchemaSpec, identity: Identity | None, acting_app: str, owner: str) -> None:
    """Refuse a schema change by an app that does not own ``spec``'s schema (seed 003)."""
    expected = identity.owner_app if identity else owner
    if acting_app != expected:
        raise NotOwner(
            f"app {acting_app!r} is a consumer of the {spec.role} schema, which is owned by "
            f"{expected!r}; consumers read and write data but never migrate.",
            f"Run migrations from {expected!r}; a consumer can verify the database with "
            f"tenantry db check --role {spec.role} --as-app {acting_app}.",
        )


def stamp_identity(conn: Connection, spec: SchemaSpec, owner_app: str) -> Identity:
    """Create the identity table and row of a fresh or adopted database."""
    identity_table.create(conn, checkfirst=True)
    identity = Identity(spec.role.value, spec.name, str(uuid.uuid4()), owner_app, utcnow())
    conn.execute(
        identity_table.insert().values(
            role=identity.role,
            schema_name=identity.schema_name,
            instance_id=identity.instance_id,
            owner_app=identity.owner_app,
            created_at=identity.created_at,
            tenantry_version=__version__,
        )
    )
    return identity
