"""Status, migration, drift check and adoption of one managed database.

Every function takes an open connection; the caller decides the transaction. Whatever changes
a schema calls :func:`tenantry.db.identity.guard` first, so a refused database is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection
from sqlalchemy.engine import URL

from tenantry.db import migrations
from tenantry.db.identity import (
    Identity,
    check_owner,
    guard,
    read_identity,
    stamp_identity,
    user_tables,
)
from tenantry.db.schemas import SchemaSpec
from tenantry.errors import SchemaMismatch, TenantryError, WrongDatabase


@dataclass(frozen=True)
class DatabaseStatus:
    """Where one database stands against its role's migrations."""

    role: str
    url: str
    identity: Identity | None
    current: str | None
    head: str | None
    pending: int


def status(conn: Connection, spec: SchemaSpec, url: str) -> DatabaseStatus:
    """Read the identity and revision of the database on ``conn``. Never writes."""
    identity = read_identity(conn)
    cur = migrations.current(conn, spec)
    head = migrations.head(spec)
    try:
        pending = len(migrations.between(spec, cur, head))
    except TenantryError:
        pending = 0  # the database is ahead of (or off) this code's history
    return DatabaseStatus(spec.role.value, url, identity, cur, head, pending)


@dataclass(frozen=True)
class MigrationResult:
    """What a migration did."""

    role: str
    url: str
    from_revision: str | None
    to_revision: str | None
    applied: list[str] = field(default_factory=list)
    stamped_identity: Identity | None = None


def migrate(
    conn: Connection,
    spec: SchemaSpec,
    url: str,
    *,
    target: str = "head",
    acting_app: str,
    owner: str,
) -> MigrationResult:
    """Upgrade the database on ``conn`` to ``target``, stamping identity on a fresh database.

    Refuses (before any change) a database of another role, a non-empty database without
    identity, an app that does not own the schema, and a downgrade.
    """
    identity = guard(conn, spec, where=url)
    check_owner(spec, identity, acting_app, owner)
    start = migrations.current(conn, spec)
    goal = migrations.resolve(spec, target)
    todo = migrations.between(spec, start, goal)
    stamped = stamp_identity(conn, spec, owner) if identity is None else None
    if todo and goal is not None:
        migrations.upgrade(conn, spec, goal)
    return MigrationResult(
        spec.role.value, url, start, goal if todo else start, [s.revision for s in todo], stamped
    )


def migration_sql(
    conn: Connection,
    spec: SchemaSpec,
    url: URL,
    *,
    target: str = "head",
    acting_app: str,
    owner: str,
) -> str:
    """The SQL that :func:`migrate` would run, after the same checks; changes nothing."""
    identity = guard(conn, spec, where=str(url))
    check_owner(spec, identity, acting_app, owner)
    start = migrations.current(conn, spec)
    goal = migrations.resolve(spec, target)
    if not migrations.between(spec, start, goal) or goal is None:
        return f"-- {spec.role} database is already at {start or 'base'}; nothing to run.\n"
    sql = migrations.upgrade_sql(spec, url, start, goal)
    if identity is None:
        sql = f"-- tenantry will also create tenantry_identity (role {spec.role}).\n" + sql
    return sql


@dataclass(frozen=True)
class CheckResult:
    """Whether a database is what the code expects."""

    role: str
    url: str
    ok: bool
    current: str | None
    head: str | None
    problems: list[str]


def check(conn: Connection, spec: SchemaSpec, url: str) -> CheckResult:
    """Compare the database with the code: identity, revision and models (drift). Never writes."""
    problems: list[str] = []
    head = migrations.head(spec)
    cur = migrations.current(conn, spec)
    try:
        identity = guard(conn, spec, where=url)
    except TenantryError as exc:
        return CheckResult(spec.role.value, url, False, cur, head, [exc.message])
    if identity is None:
        problems.append(f"the database is empty: it has no {spec.role} schema yet")
    elif cur != head:
        problems.append(f"the database is at revision {cur or 'base'}, the code expects {head}")
    else:
        problems.extend(str(d) for d in migrations.drift(conn, spec))
    return CheckResult(spec.role.value, url, not problems, cur, head, problems)


@dataclass(frozen=True)
class AdoptResult:
    """The outcome of adopting a database."""

    role: str
    url: str
    identity: Identity
    adopted: bool  # False when it already carried this role's identity


def adopt(conn: Connection, spec: SchemaSpec, url: str, *, owner: str) -> AdoptResult:
    """Stamp identity (and the head revision) on an existing database whose tables match."""
    identity = read_identity(conn)
    if identity is not None:
        if identity.role != spec.role or identity.schema_name != spec.name:
            raise WrongDatabase(
                f"cannot adopt {url} as a {spec.role} database: it is already "
                f"{identity.describe()}; nothing was changed."
            )
        return AdoptResult(spec.role.value, url, identity, adopted=False)
    if not user_tables(conn):
        raise SchemaMismatch(
            f"{url} is empty; there is nothing to adopt.",
            f"Create the schema instead: tenantry db migrate --role {spec.role}.",
        )
    diffs = migrations.drift(conn, spec)
    if diffs:
        shown = "; ".join(str(d) for d in diffs[:8])
        more = f" (and {len(diffs) - 8} more)" if len(diffs) > 8 else ""
        raise SchemaMismatch(
            f"cannot adopt {url} as a {spec.role} database: its tables differ from the "
            f"{spec.name} models in {len(diffs)} place(s): {shown}{more}; nothing was changed.",
            "Bring the tables in line with the models (or migrate a fresh database and copy the "
            "data), then adopt again.",
        )
    stamped = stamp_identity(conn, spec, owner)
    head = migrations.head(spec)
    if head is not None:
        migrations.stamp(conn, spec, head)
    return AdoptResult(spec.role.value, url, stamped, adopted=True)
