"""Status, migration, drift check and adoption of one managed database.

Every function takes an open connection; the caller decides the transaction (the lock and
transaction of :func:`migrate_locked` are held by :func:`tenantry.db.locks.migration_transaction`).
Whatever changes a schema calls :func:`tenantry.db.identity.guard` first, so a refused database
is never touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cache

from sqlalchemy import Connection
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from tenantry.db import checksums, lint, locks, migrations, quick_upgrade
from tenantry.db.identity import (
    Identity,
    check_owner,
    guard,
    read_identity,
    stamp_identity,
    user_tables,
)
from tenantry.db.lint.findings import Finding
from tenantry.db.locks import migration_transaction
from tenantry.db.schemas import SchemaSpec
from tenantry.errors import (
    Conflict,
    DestructiveChange,
    MigrationError,
    SchemaMismatch,
    TenantryError,
    WrongDatabase,
)
from tenantry.failpoints import failpoint


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
    allow_destructive: bool = False,
    checked: Identity | None = None,
) -> MigrationResult:
    """Upgrade the database on ``conn`` to ``target``, stamping identity on a fresh database.

    Refuses (before any change) a database of another role, a non-empty database without
    identity, an app that does not own the schema, a downgrade, and a pending revision that
    drops or narrows something unless ``allow_destructive``. Each applied revision's script
    hash is recorded in the database as it is applied. ``checked`` is the identity the
    caller has just verified on ``conn`` and read the version table with (fleet runs): the
    guard's reads are not repeated, the revision is (under the lock).
    """
    identity = checked or guard(conn, spec, where=url)
    check_owner(spec, identity, acting_app, owner)
    # A checked database (fleet runs) whose DDL is transactional is upgraded with fewer
    # statements (tenantry.db.quick_upgrade); any other the ordinary Alembic way.
    quick = checked is not None and quick_upgrade.supports(conn.dialect.name)
    checksums_exist = False
    if quick:
        start, checksums_exist = quick_upgrade.state(conn, spec)
    else:
        start = migrations.current(conn, spec, table_exists=checked is not None)
    goal = migrations.resolve(spec, target)
    todo = migrations.between(spec, start, goal)
    if todo and not allow_destructive:
        refuse_destructive(spec, start, goal)
    stamped = stamp_identity(conn, spec, owner) if identity is None else None
    if todo and goal is not None and quick and start is not None:
        quick_upgrade.apply(conn, spec, start, goal, todo, checksums_exist=checksums_exist)
    elif todo and goal is not None:
        migrations.upgrade(
            conn, spec, goal, on_applied=lambda rev: checksums.record(conn, spec, [rev])
        )
    return MigrationResult(
        spec.role.value, url, start, goal if todo else start, [s.revision for s in todo], stamped
    )


@cache
def destructive_findings(
    spec: SchemaSpec, start: str | None, goal: str | None
) -> tuple[Finding, ...]:
    """The destructive findings of the revisions from ``start`` to ``goal`` (linted once)."""
    return tuple(f for f in lint.lint_pending(spec, start, goal) if f.destructive)


def refuse_destructive(spec: SchemaSpec, start: str | None, goal: str | None) -> None:
    """Raise :class:`MigrationError` naming each destructive change pending; nothing runs."""
    found = destructive_findings(spec, start, goal)
    if found:
        shown = "; ".join(f"{f.revision}: {f.detail}" for f in found[:5])
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        raise DestructiveChange(
            f"refusing a destructive {spec.role} migration: {shown}{more}; nothing was changed.",
            f"Review the change with `tenantry db lint --role {spec.role}`; if it is intended "
            "(data copied elsewhere, code no longer using it), run again with "
            "--allow-destructive.",
        )


def migrate_locked(
    conn: Connection,
    spec: SchemaSpec,
    url: str,
    *,
    target: str = "head",
    acting_app: str,
    owner: str,
    allow_destructive: bool = False,
    lock_wait_s: float = 0.0,
    checked: Identity | None = None,
) -> MigrationResult:
    """:func:`migrate` under the database's migration lock, in a transaction of its own.

    ``conn`` must not be in a transaction: the lock is held by the session around it (on
    SQLite the transaction itself is the lock). Raises :class:`Conflict` when another
    migration holds the lock after ``lock_wait_s``.
    """
    attempts = locks.DDL_LOCK_ATTEMPTS if conn.dialect.name == "postgresql" else 1
    for attempt in range(1, attempts + 1):
        try:
            with migration_transaction(
                conn,
                spec.role.value,
                wait_s=lock_wait_s,
                lock_timeout_s=locks.DDL_LOCK_TIMEOUT_S,
            ):
                result = migrate(
                    conn,
                    spec,
                    url,
                    target=target,
                    acting_app=acting_app,
                    owner=owner,
                    allow_destructive=allow_destructive,
                    checked=checked,
                )
                failpoint("migrate.before_commit")
                return result
        except DBAPIError as exc:
            if not locks.lock_wait_ran_out(exc):
                raise
            if attempt == attempts:
                waited = f"{attempts} x {locks.DDL_LOCK_TIMEOUT_S:g} s"
                raise Conflict(
                    f"the {spec.role} migration of {url} waited {waited} for a lock another "
                    "session holds on its tables (a backup, a long transaction) and gave up; "
                    "nothing of the waiting statement was applied.",
                    "Run it again once that session has ended (a backup ends by itself; see "
                    "pg_stat_activity or SHOW PROCESSLIST for the holder).",
                ) from None
            time.sleep(attempt)  # the holder (a backup's snapshot) usually ends soon
    raise AssertionError("unreachable")  # the loop returns or raises


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
    problems.extend(checksums.verify(conn, spec).problems(spec.role.value))
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


@dataclass(frozen=True)
class ResolveResult:
    """What ``db resolve`` recorded."""

    role: str
    url: str
    revision: str
    marked: str  # "applied" or "rolled-back"
    before: str | None
    after: str | None


def resolve(
    conn: Connection, spec: SchemaSpec, url: str, revision: str, *, applied: bool
) -> ResolveResult:
    """Record the state of a revision that failed and was finished or undone by hand.

    ``applied``: its changes are now all in place, so the database is at ``revision`` (and
    its script's hash is recorded). Otherwise it was rolled back: the database is at the
    revision before it. Changes only tenantry's version and checksum rows, in the caller's
    transaction.
    """
    guard(conn, spec, where=url)
    rev = migrations.resolve(spec, revision)
    if rev is None:
        raise MigrationError(
            "resolve needs a revision, not base.",
            f"Name the failed revision (see `tenantry db history --role {spec.role}`).",
        )
    before = migrations.current(conn, spec)
    if applied:
        migrations.stamp(conn, spec, rev)
        checksums.record(conn, spec, [rev])
        after: str | None = rev
    else:
        script = migrations.scripts(spec).get_revision(rev)
        parent = script.down_revision if script is not None else None
        if parent is not None and not isinstance(parent, str):
            raise MigrationError(f"revision {rev} merges several parents; resolve each branch.")
        after = before
        if before == rev:
            migrations.stamp(conn, spec, parent or "base")
            after = parent
        checksums.forget(conn, spec, [rev])
    return ResolveResult(
        spec.role.value, url, rev, "applied" if applied else "rolled-back", before, after
    )
