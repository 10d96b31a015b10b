"""The identity row every managed database carries, and the one guard that reads it first.

A database's identity says what it is (role, schema, instance id, owner app). Everything that
changes a schema, backs up, restores, recovers, moves or serves a database calls :func:`expect`
(or :func:`guard`, for a database that may still be empty) before touching it, so a billing
migration pointed at the master database, or a restore aimed at another store's database, is
refused with nothing changed, in one message shape: the database, what was expected, what was
found, and what to do.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, overload

from sqlalchemy import (
    Column,
    Connection,
    MetaData,
    RowMapping,
    String,
    Table,
    bindparam,
    inspect,
    select,
)

from tenantry.db.schemas import Role, SchemaSpec
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


@overload
def expect(
    conn: Connection,
    spec: SchemaSpec | Role,
    *,
    where: str,
    instance_id: str | None = None,
    owner: str | None = None,
    identity: Identity | None = None,
    why: str | None = None,
    hint: str | None = None,
    empty_ok: Literal[False] = False,
) -> Identity: ...


@overload
def expect(
    conn: Connection,
    spec: SchemaSpec | Role,
    *,
    where: str,
    instance_id: str | None = None,
    owner: str | None = None,
    identity: Identity | None = None,
    why: str | None = None,
    hint: str | None = None,
    empty_ok: Literal[True],
) -> Identity | None: ...


def expect(
    conn: Connection,
    spec: SchemaSpec | Role,
    *,
    where: str,
    instance_id: str | None = None,
    owner: str | None = None,
    identity: Identity | None = None,
    why: str | None = None,
    hint: str | None = None,
    empty_ok: bool = False,
) -> Identity | None:
    """The one guard: refuse ``conn`` unless it is the database the caller means to touch.

    ``spec`` gives the role and schema (a bare :class:`Role` checks the role only);
    ``instance_id`` and ``owner`` (the app that must own the schema), when given, must match
    too. ``where`` names the database (its masked URL, and whose it is); ``why`` is the rule
    the refusal protects and ``hint`` what to do, both for the message. ``identity`` is what
    the caller has just read on ``conn`` (one :func:`~tenantry.db.probe.probe`), else it is
    read here. ``empty_ok`` lets an empty database without identity through (``None``: one
    about to be stamped or restored into).

    Raises :class:`WrongDatabase` (another role, schema or instance, or an unexpected empty
    database), :class:`UnidentifiedDatabase` (tables but no identity) or :class:`NotOwner`.
    Only reads.
    """
    found = identity if identity is not None else read_identity(conn)
    expected = Expected.of(spec, instance_id, owner)
    if found is None:
        tables = user_tables(conn)
        if empty_ok and not tables:
            return None
        raise _missing(expected, tables, where, why, hint)
    _compare(expected, found, where, why, hint)
    return found


def guard(conn: Connection, spec: SchemaSpec, *, where: str = "the database") -> Identity | None:
    """:func:`expect` of ``spec``'s role and schema, for a database that may still be empty.

    Returns the identity, or ``None`` for an empty database that may be stamped. Only reads.
    """
    return expect(conn, spec, where=where, empty_ok=True)


@dataclass(frozen=True)
class Expected:
    """What a caller expects a database to be (the parts it does not know are ``None``)."""

    role: str
    schema_name: str | None = None
    instance_id: str | None = None
    owner: str | None = None

    @classmethod
    def of(cls, spec: SchemaSpec | Role, instance_id: str | None, owner: str | None) -> Expected:
        """The expectation of a role (or a role's schema), one instance and one owner."""
        if isinstance(spec, SchemaSpec):
            return cls(spec.role.value, spec.name, instance_id or None, owner)
        return cls(Role(spec).value, None, instance_id or None, owner)

    def describe(self) -> str:
        """E.g. ``a tenant database (schema store, instance …)``."""
        parts = [
            f"{label} {value}"
            for label, value in (
                ("schema", self.schema_name),
                ("instance", self.instance_id),
                ("owner", self.owner),
            )
            if value
        ]
        return f"a {self.role} database" + (f" ({', '.join(parts)})" if parts else "")


def refusal(expected: Expected, found: str, where: str, why: str | None) -> str:
    """The one shape of every refusal: the database, what was expected, what was found."""
    because = f"; {why}" if why else ""
    return (
        f"expected {expected.describe()} at {where}, found {found}{because}; nothing was changed."
    )


def _missing(
    expected: Expected, tables: Sequence[str], where: str, why: str | None, hint: str | None
) -> WrongDatabase | UnidentifiedDatabase:
    if not tables:
        return WrongDatabase(
            refusal(expected, "an empty database without tenantry identity", where, why),
            hint or "Check the URL settings (or the store's connection): it leads elsewhere.",
        )
    shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
    return UnidentifiedDatabase(
        refusal(
            expected,
            f"a database with {len(tables)} table(s) ({shown}) and no tenantry identity",
            where,
            why,
        ),
        hint
        or f"If it really is the {expected.role} database, adopt it first: "
        f"tenantry db adopt --role {expected.role}.",
    )


def _compare(
    expected: Expected, found: Identity, where: str, why: str | None, hint: str | None
) -> None:
    if found.role != expected.role or expected.schema_name not in (None, found.schema_name):
        raise WrongDatabase(
            refusal(expected, found.describe(), where, why),
            hint or "Check the URL settings: each role must point at its own database.",
        )
    if expected.instance_id and found.instance_id != expected.instance_id:
        raise WrongDatabase(
            refusal(expected, found.describe(), where, why),
            hint
            or "The connection leads to another copy or another database: point it at the "
            "database master recorded.",
        )
    if expected.owner and found.owner_app != expected.owner:
        raise NotOwner(
            refusal(
                expected,
                found.describe(),
                where,
                why
                or f"app {expected.owner!r} is a consumer of the {expected.role} schema, "
                "which consumers read and write but never migrate",
            ),
            hint or f"Run migrations from {found.owner_app!r}.",
        )


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


def stamp_identity(
    conn: Connection,
    spec: SchemaSpec,
    owner_app: str,
    *,
    table_exists: bool = False,
    instance_id: str | None = None,
) -> Identity:
    """Create the identity table (unless ``table_exists``) and row of a fresh or adopted
    database; its instance id is ``instance_id`` (what the job making the database recorded
    it would be), or a new one."""
    if not table_exists:
        identity_table.create(conn, checkfirst=True)
    instance = instance_id or str(uuid.uuid4())
    identity = Identity(spec.role.value, spec.name, instance, owner_app, utcnow())
    conn.execute(_STAMP, _stamp_values(identity))
    return identity


# Every new database is stamped: the statement is built once, its values bound at each run.
_STAMP = identity_table.insert().values(
    role=bindparam("b_role"),
    schema_name=bindparam("b_schema"),
    instance_id=bindparam("b_instance"),
    owner_app=bindparam("b_owner"),
    created_at=bindparam("b_created"),
    tenantry_version=bindparam("b_version"),
)


def _stamp_values(identity: Identity) -> dict[str, Any]:
    return {
        "b_role": identity.role,
        "b_schema": identity.schema_name,
        "b_instance": identity.instance_id,
        "b_owner": identity.owner_app,
        "b_created": identity.created_at,
        "b_version": __version__,
    }


#: The role a spare database states until a store claims it: no guard expecting a tenant (or
#: any other role) accepts it, so a spare is never routed to, migrated or restored into.
SPARE_ROLE = "spare"


def stamp_spare(conn: Connection, spec: SchemaSpec, owner_app: str, spare_id: str) -> None:
    """Stamp a fresh template copy as the unassigned spare ``spare_id`` of ``spec``'s schema."""
    identity_table.create(conn, checkfirst=True)
    spare = Identity(SPARE_ROLE, spec.name, spare_id, owner_app, utcnow())
    conn.execute(_STAMP, _stamp_values(spare))


def claim_spare(conn: Connection, spec: SchemaSpec, owner_app: str, spare_id: str) -> Identity:
    """Turn the unassigned identity of spare ``spare_id`` into a tenant identity of
    ``spec``'s schema, in the caller's transaction; refuses a database that is not that
    spare. The new identity keeps the spare's id as its instance id: the job that claimed
    the spare recorded that id, so whatever state a crash leaves, the job can tell the
    database it renamed into place from another one at the same name."""
    identity = Identity(spec.role.value, spec.name, spare_id, owner_app, utcnow())
    # One statement is both the check and the stamp: only that spare's row matches, and a
    # database of any other identity is left as it was.
    claimed = conn.execute(
        identity_table.update()
        .where(
            identity_table.c.role == SPARE_ROLE,
            identity_table.c.schema_name == spec.name,
            identity_table.c.instance_id == spare_id,
        )
        .values(
            role=identity.role,
            instance_id=identity.instance_id,
            owner_app=identity.owner_app,
            created_at=identity.created_at,
            tenantry_version=__version__,
        )
    ).rowcount
    if claimed != 1:
        found = read_identity(conn)
        raise WrongDatabase(
            refusal(
                Expected(SPARE_ROLE, spec.name, spare_id),
                found.describe() if found else "a database without tenantry identity",
                "the claimed spare",
                None,
            ),
            "Run `tenantry doctor`: the spare pool's record and the server disagree.",
        )
    return identity
