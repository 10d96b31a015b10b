"""The hash of every applied revision's script, kept in the database it was applied to.

Alembic records only the current revision; a script edited after it ran (by mistake or by
intent) would go unnoticed while databases migrated before and after the edit differ.
tenantry records a SHA-256 of each revision's file as it applies it, and ``db check`` /
``fleet status --verify`` compare the record with the scripts the code holds now.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from alembic.script import Script
from sqlalchemy import Column, Connection, MetaData, String, Table, inspect, select

from tenantry.db import migrations
from tenantry.db.schemas import Role, SchemaSpec
from tenantry.db.types import UTCDateTime, utcnow

_metadata = MetaData()

#: Made once at import: built on first use, two threads of a fleet run could both define the
#: same table in ``_metadata`` (``functools.cache`` does not make the first call exclusive).
_TABLES = {
    role.value: Table(
        f"tenantry_{role.value}_checksums",
        _metadata,
        Column("revision", String(64), primary_key=True),
        Column("checksum", String(64), nullable=False),
        Column("applied_at", UTCDateTime, nullable=False),
    )
    for role in Role
}


def checksum_table(spec_role: str) -> Table:
    """``tenantry_<role>_checksums``: one row per applied revision."""
    return _TABLES[spec_role]


@cache
def _file_checksum(path: str, mtime_ns: int, size: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def script_checksum(script: Script) -> str:
    """SHA-256 of the revision's file as it is now (hashed again only when it changes)."""
    info = Path(script.path).stat()
    return _file_checksum(script.path, info.st_mtime_ns, info.st_size)


def record(conn: Connection, spec: SchemaSpec, revisions: list[str]) -> None:
    """Record (or re-record) the current scripts' hashes of ``revisions`` on ``conn``."""
    if not revisions:
        return
    table = checksum_table(spec.role.value)
    table.create(conn, checkfirst=True)
    conn.execute(table.delete().where(table.c.revision.in_(revisions)))
    directory = migrations.scripts(spec)
    conn.execute(table.insert(), checksum_rows([directory.get_revision(r) for r in revisions]))


def checksum_rows(scripts: list[Script]) -> list[dict[str, Any]]:
    """The checksum table's rows recording ``scripts`` as applied now."""
    now = utcnow()
    return [
        {"revision": s.revision, "checksum": script_checksum(s), "applied_at": now} for s in scripts
    ]


def recorded(conn: Connection, spec: SchemaSpec) -> dict[str, str] | None:
    """Revision → recorded hash; ``None`` when the database has no checksum table."""
    table = checksum_table(spec.role.value)
    if not inspect(conn).has_table(table.name):
        return None
    return {row.revision: row.checksum for row in conn.execute(select(table))}


@dataclass(frozen=True)
class ChecksumReport:
    """How the applied revisions' scripts compare with what was recorded when they ran."""

    changed: list[str]  # revisions whose script differs from the one that was applied
    unrecorded: list[str]  # applied before tenantry recorded checksums (nothing to compare)

    def problems(self, role: str) -> list[str]:
        """One sentence per changed revision."""
        return [
            f"revision {rev} was changed after it was applied to this {role} database "
            "(its script's checksum differs from the one recorded when it ran)"
            for rev in self.changed
        ]


def applied_chain(spec: SchemaSpec, current: str | None) -> list[str]:
    """The revisions a database at ``current`` has applied, oldest first."""
    return list(_chain(spec, current))


@cache
def _chain(spec: SchemaSpec, current: str | None) -> tuple[str, ...]:
    # The scripts are loaded once per process (migrations.scripts), so their order is too.
    if current is None or not migrations.known(spec, current):
        return ()  # a revision this code does not know is reported as such elsewhere
    return tuple(s.revision for s in migrations.between(spec, None, current))


def scripts_now(spec: SchemaSpec) -> dict[str, str]:
    """Each revision's script hash as the files are now: what a run comparing many databases
    reads once (the files are stat'ed once per run rather than once per database)."""
    return {s.revision: script_checksum(s) for s in migrations.scripts(spec).walk_revisions()}


def compare(
    spec: SchemaSpec,
    current: str | None,
    stored: dict[str, str] | None,
    *,
    now: Mapping[str, str] | None = None,
) -> ChecksumReport:
    """Compare the recorded hashes of the chain up to ``current`` with the scripts now
    (``now``: the hashes :func:`scripts_now` read at the start of the caller's run)."""
    chain = _chain(spec, current)
    stored = stored or {}
    directory = migrations.scripts(spec)
    changed = [
        rev
        for rev in chain
        if rev in stored
        and stored[rev]
        != (now[rev] if now is not None else script_checksum(directory.get_revision(rev)))
    ]
    return ChecksumReport(changed, [rev for rev in chain if rev not in stored])


#: ``verify``'s default: read the revision from the database.
_READ = object()


def verify(conn: Connection, spec: SchemaSpec, *, revision: Any = _READ) -> ChecksumReport:
    """Read the database's records (and its revision, unless the caller just read it on
    ``conn`` and passes it as ``revision``); never writes."""
    current = migrations.current(conn, spec) if revision is _READ else revision
    return compare(spec, current, recorded(conn, spec))


def record_missing(conn: Connection, spec: SchemaSpec) -> list[str]:
    """Record the hashes of applied revisions that have none; the revisions recorded.

    For a database tenantry has just built from these very scripts (provisioning); on a
    database migrated by older code it would bless whatever the scripts say now.
    """
    stored = recorded(conn, spec) or {}
    missing = [r for r in applied_chain(spec, migrations.current(conn, spec)) if r not in stored]
    record(conn, spec, missing)
    return missing


def forget(conn: Connection, spec: SchemaSpec, revisions: list[str]) -> None:
    """Drop the records of ``revisions`` (rolled back by hand)."""
    table = checksum_table(spec.role.value)
    if revisions and inspect(conn).has_table(table.name):
        conn.execute(table.delete().where(table.c.revision.in_(revisions)))
