"""Alembic driven from code: one script directory per role, no alembic.ini for users."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, MigrationStep
from alembic.script import Script, ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util.exc import CommandError
from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine import URL

from tenantry.db import alembic_threads, schema_fingerprint
from tenantry.db.alembic_env import configure_options
from tenantry.db.schemas import SchemaSpec
from tenantry.errors import MigrationError


def alembic_config(spec: SchemaSpec, **attributes: Any) -> Config:
    """An Alembic ``Config`` for ``spec``'s script directory; ``attributes`` reach env.py."""
    config = Config()
    config.set_main_option("script_location", str(spec.migrations))
    config.attributes["spec"] = spec
    config.attributes.update(attributes)
    return config


_LOADING = threading.Lock()


def scripts(spec: SchemaSpec) -> ScriptDirectory:
    """The role's migration scripts, loaded once per process and shared by its threads."""
    with _LOADING:
        return _loaded(spec)


@cache
def _loaded(spec: SchemaSpec) -> ScriptDirectory:
    directory = ScriptDirectory.from_config(alembic_config(spec))
    # Alembic builds the revision map on first use, without a lock: threads that built it at
    # once each made their own revision objects, and an upgrade plan that met objects of two
    # maps found a revision "not an ancestor" of its successor. Built here, under the lock,
    # before any thread plans with it.
    directory.revision_map.heads  # noqa: B018 (a memoised property: reading it builds the map)
    return directory


def head(spec: SchemaSpec) -> str | None:
    """The newest revision of ``spec``'s migrations."""
    heads = scripts(spec).get_heads()
    if len(heads) > 1:
        raise MigrationError(
            f"the {spec.role} migrations have several heads ({', '.join(heads)}).",
            "Merge them with an Alembic merge revision before migrating.",
        )
    return heads[0] if heads else None


def current(conn: Connection, spec: SchemaSpec, *, table_exists: bool = False) -> str | None:
    """The revision the database is at, read from the role's own version table.

    ``table_exists`` skips looking the table up (the caller just read it on ``conn``).
    """
    if not table_exists and not inspect(conn).has_table(spec.version_table):
        return None
    rows = conn.execute(text(f"SELECT version_num FROM {spec.version_table}")).scalars().all()
    if len(rows) > 1:
        raise MigrationError(
            f"the {spec.role} database records several heads ({', '.join(rows)}).",
            "Merge the branches with an Alembic merge revision.",
        )
    return rows[0] if rows else None


#: What a revision is named by on the command line: ``head`` or (the start of) an id.
_REVISION_REF = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def resolve(spec: SchemaSpec, target: str) -> str | None:
    """The full revision id of ``target`` (``head``, ``base``, an id or a unique prefix)."""
    if target == "base":
        return None
    if not _REVISION_REF.fullmatch(target):
        # Alembic reads relative forms ("head-1", "@") and asserts on an empty one.
        raise MigrationError(
            f"invalid {spec.role} revision {target!r}: give head, base or a revision id.",
            f"See the revisions with `tenantry db history --role {spec.role}`.",
        )
    try:
        found = scripts(spec).get_revision(target)
    except (CommandError, RevisionError) as exc:
        raise MigrationError(
            f"unknown {spec.role} revision {target!r}: {exc}.",
            f"See the revisions with `tenantry db history --role {spec.role}`.",
        ) from None
    if found is None:
        return None
    return found.revision


def known(spec: SchemaSpec, revision: str) -> bool:
    """Whether ``revision`` is one of this code's revisions of ``spec``."""
    if not _REVISION_REF.fullmatch(revision):
        return False
    try:
        return scripts(spec).get_revision(revision) is not None
    except (CommandError, RevisionError):
        return False


def between(spec: SchemaSpec, start: str | None, target: str | None) -> list[Script]:
    """The revisions an upgrade from ``start`` to ``target`` applies, oldest first.

    Raises :class:`MigrationError` when the database is at a revision this code does not
    know, or when ``target`` is behind ``start`` (tenantry never runs downgrades).
    """
    if start is not None and not known(spec, start):
        raise MigrationError(
            f"the {spec.role} database is at revision {start!r}, which this code's migrations "
            "do not contain.",
            "It was migrated by a newer version of the schema; upgrade the code instead.",
        )
    if start == target:
        return []
    downgrade = MigrationError(
        f"{target or 'base'} is behind the {spec.role} database's revision {start}; "
        "tenantry does not run downgrades.",
        "Write a new revision that undoes the change, or restore a backup.",
    )
    if target is None:
        raise downgrade
    if start is not None:
        behind = {r.revision for r in scripts(spec).iterate_revisions(start, None)}
        if target in behind:
            raise downgrade
    return list(reversed(list(scripts(spec).iterate_revisions(target, start))))


def _environment(spec: SchemaSpec, **kwargs: Any) -> EnvironmentContext:
    # Never entered as a context manager: entering installs Alembic's process-wide proxies.
    return EnvironmentContext(alembic_config(spec), scripts(spec), **kwargs)


def _upgrade_steps(spec: SchemaSpec, target: str) -> Callable[..., list[MigrationStep]]:
    """Alembic's ``fn``: the steps from the database's revision (or --sql start) to ``target``."""
    directory = scripts(spec)

    def plan(rev: str | tuple[str, ...] | None, _context: MigrationContext) -> list[MigrationStep]:
        revisions = list(
            reversed(list(directory.iterate_revisions(target, rev, implicit_base=True)))
        )
        for script in revisions:
            # Its op and context reach the migration running in the calling thread, so several
            # threads may run the script at once (see tenantry.db.alembic_threads).
            alembic_threads.bind(script)
        return [MigrationStep.upgrade_from_script(directory.revision_map, s) for s in revisions]

    return plan


def _run(env: EnvironmentContext) -> None:
    """Run ``env``'s migrations with this thread's scripts' ``op`` and ``context`` on it."""
    context = env.get_context()
    with alembic_threads.running(Operations(context), env), context.begin_transaction():
        context.run_migrations()


def upgrade(
    conn: Connection,
    spec: SchemaSpec,
    target: str,
    *,
    on_applied: Callable[[str], None] | None = None,
) -> None:
    """Upgrade the database on ``conn`` to ``target`` inside the caller's transaction.

    Runs the role's scripts as loaded once per process (no env.py, no re-import per
    database: a fleet run pays for loading the scripts once). ``on_applied`` is called with
    each revision applied, after the scripts ran, on the same connection and transaction.
    """
    done: list[str] = []

    def applied(ctx: MigrationContext, step: Any, heads: Any, run_args: Any) -> None:
        if step.up_revision_id is not None:
            done.append(step.up_revision_id)

    env = _environment(spec, fn=_upgrade_steps(spec, target), destination_rev=target)
    env.configure(connection=conn, on_version_apply=applied, **configure_options(spec))
    _run(env)
    for revision in done:
        if on_applied is not None:
            on_applied(revision)


def run_scripts(conn: Connection, spec: SchemaSpec, revisions: list[Script]) -> None:
    """Run the ``upgrade()`` of each of ``revisions`` (oldest first) on ``conn``, inside the
    caller's transaction, without touching the version table: the caller moves it.

    For a database whose revision the caller has just read under its migration lock (the
    version table exists): Alembic's ``run_migrations`` would look the table up and read the
    revision again, then update the table once per revision, each a round trip. Only public
    Alembic API: the scripts' modules, run with an ``Operations`` on a configured context as
    :func:`upgrade` does. Meant for a backend whose DDL is transactional (PostgreSQL,
    SQLite), where the scripts and the caller's version update commit or roll back together.
    """
    if not revisions:
        return
    env = _environment(spec, destination_rev=revisions[-1].revision)
    env.configure(connection=conn, **configure_options(spec))
    context = env.get_context()
    for script in revisions:
        alembic_threads.bind(script)
    with alembic_threads.running(Operations(context), env):
        for script in revisions:
            script.module.upgrade()


def stamp(conn: Connection, spec: SchemaSpec, target: str) -> None:
    """Record ``target`` as the database's revision without running anything."""
    env = _environment(spec, destination_rev=target)
    env.configure(connection=conn, **configure_options(spec))
    context = env.get_context()
    with context.begin_transaction():
        context.stamp(scripts(spec), target)


def upgrade_sql(spec: SchemaSpec, url: URL, start: str | None, target: str) -> str:
    """The SQL an upgrade from ``start`` to ``target`` would run on ``url``'s dialect."""
    buffer = io.StringIO()
    env = _environment(
        spec,
        fn=_upgrade_steps(spec, target),
        as_sql=True,
        starting_rev=start,
        destination_rev=target,
    )
    # As env.py configures an offline run (tenantry.db.alembic_env.run).
    env.configure(url=url, literal_binds=True, output_buffer=buffer, **configure_options(spec))
    _run(env)
    return buffer.getvalue()


@dataclass(frozen=True)
class Difference:
    """One way a database differs from its role's models."""

    kind: str  # Alembic's: add_table, remove_table, add_column, modify_column, add_index, ...
    table: str | None
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


def _describe(diff: Any) -> Difference:
    if isinstance(diff, list):  # column modifications come grouped per column
        _, _, table, column = diff[0][:4]
        what = ", ".join(d[0].removeprefix("modify_") for d in diff)
        return Difference("modify_column", table, f"{table}.{column} ({what} differs)")
    kind = diff[0]
    if kind in ("add_column", "remove_column"):
        table, column = diff[2], diff[3]
        return Difference(kind, table, f"{table}.{column.name}")
    obj = diff[1]
    if kind in ("add_table", "remove_table"):
        return Difference(kind, obj.name, obj.name)
    table = getattr(getattr(obj, "table", None), "name", None)
    name = getattr(obj, "name", None) or str(obj)
    return Difference(kind, table, f"{table}.{name}" if table else name)


#: Schemas (by fingerprint) already compared in full and found matching the models.
_CLEAN = schema_fingerprint.CleanSchemas()


def known_clean(spec: SchemaSpec, fingerprint: str) -> bool:
    """Whether a database with schema ``fingerprint`` was compared in full in this process
    and found matching ``spec``'s models (:func:`drift` of any such database is empty)."""
    return _CLEAN.known_clean(spec, fingerprint)


def drift(conn: Connection, spec: SchemaSpec, fingerprint: str | None = None) -> list[Difference]:
    """How the database differs from the models, as ``alembic check`` sees it.

    The full comparison reflects the whole schema (dozens of catalog queries). A database
    whose schema fingerprint (one query, or ``fingerprint`` when the caller just read it on
    ``conn``) equals one already compared in full and found matching ``spec`` matches it too,
    and is not compared again.
    """
    fp = fingerprint or schema_fingerprint.fingerprint(conn)
    if fp is not None and _CLEAN.known_clean(spec, fp):
        return []
    options = configure_options(spec)
    options.pop("render_as_batch")
    metadata = options.pop("target_metadata")
    ctx = MigrationContext.configure(conn, opts=options)
    found = [_describe(d) for d in compare_metadata(ctx, metadata)]
    if fp is not None and not found:
        _CLEAN.remember(spec, fp)
    return found
