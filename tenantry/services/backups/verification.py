"""Verifying a backup by restoring it: a backup that was never restored is not a backup.

The artifact is restored into a scratch database on the same kind of server, the engine's
integrity check runs there, the row counts are compared with the manifest's and the
restored identity with the catalog's; the scratch database is dropped whatever happens. The
restore's duration is recorded: it is the measured recovery time to set against the RTO.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Update, update
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from tenantry.backup import artifacts
from tenantry.backup.artifacts import CorruptArtifact
from tenantry.backup.dump_tools import engine_for
from tenantry.backup.dump_tools.base import BackupToolError
from tenantry.backup.storage import Storage
from tenantry.db.admin import create_database, drop_database
from tenantry.db.engines import connect, make_engine, sqlite_path
from tenantry.db.identity import expect
from tenantry.db.master.models import GOOD_BACKUP_STATUSES, Backup, BackupStatus
from tenantry.db.schemas import Role
from tenantry.db.shared_schemas import whole_database
from tenantry.db.types import utcnow
from tenantry.db.urls import mask
from tenantry.errors import (
    ConfigurationError,
    Conflict,
    NotFound,
    TenantryError,
    UnidentifiedDatabase,
    WrongDatabase,
)
from tenantry.services import refs

SCRATCH_PREFIX = "tenantry_scratch_"
#: What a scratch database is for: a restore test, a shared-schema store's in-place restore,
#: a row recovery.
SCRATCH_PURPOSES = ("verify", "restore", "recover")
#: How many hex digits of the backup's id a scratch database's name carries.
SCRATCH_ID_DIGITS = 12


def scratch_name(backup_id: uuid.UUID, purpose: str) -> str:
    """The name of backup ``backup_id``'s scratch database for ``purpose``."""
    return f"{SCRATCH_PREFIX}{purpose}_{backup_id.hex[:SCRATCH_ID_DIGITS]}"


def scratch_url(server: URL, name: str) -> URL:
    """The URL of scratch database ``name`` on ``server`` (a file beside it for SQLite)."""
    path = sqlite_path(server)
    if path is not None:
        return server.set(database=str(path.parent / f"{name}.db"))
    return server.set(database=name)


@contextmanager
def scratch_database(server: URL, backup_id: uuid.UUID, purpose: str = "verify") -> Iterator[URL]:
    """A new empty database next to ``server`` (a file beside it for SQLite), always dropped.

    A process killed inside the block leaves it: the recovery sweep drops it once no live
    operation uses the backup (:mod:`~tenantry.services.backups.scratch_sweep`)."""
    url = scratch_url(server, scratch_name(backup_id, purpose))
    # A shared-schema store's scratch keeps its schema confinement (the dump restores that
    # schema), but the scratch database is tenantry's own and is dropped whole.
    whole = whole_database(url)
    drop_database(whole)  # a scratch left by a killed run
    create_database(whole)
    try:
        yield url
    finally:
        drop_database(whole)


def get_backup(session: Session, ref: str | uuid.UUID) -> Backup:
    """A backup by id, or by a unique prefix of its id (as ``backup list`` shows it)."""
    return refs.find(
        session, Backup, ref, what="backup", hint="See the catalog with `tenantry backup list`."
    )


def require_good(backup: Backup) -> None:
    """Refuse a backup that is not stored and intact (failed, corrupt, pruned, running)."""
    if backup.status not in GOOD_BACKUP_STATUSES:
        raise Conflict(
            f"backup {backup.id} is {backup.status}"
            + (f" ({backup.error})" if backup.error else "")
            + "; it cannot be used.",
            "Choose a stored or verified backup (`tenantry backup list`).",
        )


def restore_artifact(
    storage: Storage, backup: Backup, url: URL, on_progress: artifacts.Progress | None = None
) -> float:
    """Restore ``backup`` into the (new, empty) database at ``url``; seconds taken."""
    if storage.kind != backup.storage:
        raise ConfigurationError(
            f"backup {backup.id} is in {backup.storage} storage, but backups are configured "
            f"to use {storage.describe()}.",
            "Set the TENANTRY_BACKUP_* variables it was taken with (see the README).",
        )
    started = time.perf_counter()
    with artifacts.opened(
        storage, backup.artifact_key, sha256=backup.sha256, on_progress=on_progress
    ) as dump:
        engine_for(url).restore(url, dump)
    return time.perf_counter() - started


@dataclass
class Verification:
    """The outcome of restoring a backup into a scratch database and checking it."""

    backup_id: uuid.UUID
    passed: bool
    restore_seconds: float
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    row_counts: dict[str, int] = field(default_factory=dict)


#: Engines whose manifest counts come from the dump's own snapshot. MySQL's are read in a
#: separate snapshot just before the dump, so a write in between shows as a difference that
#: is reported as a note, not as damage.
EXACT_COUNTS = frozenset({"postgresql", "sqlite"})


def check_restored(backup: Backup, url: URL) -> tuple[list[str], list[str], dict[str, int]]:
    """Problems and notes about a restored copy of ``backup`` at ``url``, and its row counts."""
    engine = engine_for(url)
    integrity = engine.integrity_check(url)
    problems = list(integrity.problems)
    notes = list(integrity.skipped)
    counts = engine.row_counts(url)
    for table, expected in sorted(backup.row_counts.items()):
        if counts.get(table) != expected:
            found = f"table {table}: {counts.get(table)} rows, the manifest says {expected}"
            (problems if backup.engine in EXACT_COUNTS else notes).append(found)
    db = make_engine(url, pooled=False)
    try:
        with connect(db) as conn:
            expect(
                conn,
                Role(backup.role),
                where=f"the restored copy of backup {backup.id}",
                instance_id=backup.instance_id,
            )
    except (WrongDatabase, UnidentifiedDatabase) as refused:
        problems.append(refused.message)  # a damaged copy is a finding, not an error
    finally:
        db.dispose()
    return problems, notes, counts


def restore_test(
    storage: Storage,
    backup: Backup,
    server: URL,
    *,
    on_progress: artifacts.Progress | None = None,
) -> Verification:
    """Restore ``backup`` into a scratch database on ``server`` and check it (nothing is
    recorded: see :func:`recorded`).

    A damaged artifact (size, hash, format) or a restored copy that fails its checks is a
    failed verification, with the problems found; a passing one notes what was skipped
    (amcheck without the privilege to run it). Trouble with the scratch server itself (cannot
    create a database, a query refused) raises :class:`VerificationNotRun`: nothing is known
    about the backup then.
    """
    require_good(backup)
    problems: list[str] = []
    notes: list[str] = []
    counts: dict[str, int] = {}
    seconds = 0.0
    try:
        with scratch_database(server, backup.id) as scratch:
            try:
                seconds = restore_artifact(storage, backup, scratch, on_progress)
            except (CorruptArtifact, BackupToolError, NotFound) as exc:
                problems.append(exc.message)
            else:
                problems, notes, counts = check_restored(backup, scratch)
    except Exception as exc:
        raise VerificationNotRun.of(exc, backup.id, server) from None
    return Verification(backup.id, not problems, seconds, problems, notes, counts)


def recorded(result: Verification) -> Update:
    """The catalog's record of a restore test: ``verified``, or ``corrupt`` with why."""
    return (
        update(Backup)
        .where(Backup.id == result.backup_id)
        .values(
            verified_at=utcnow(),
            verify_passed=result.passed,
            verify_duration_ms=round(result.restore_seconds * 1000),
            verify_error="; ".join(result.problems)[:4000] or None,
            verify_notes="; ".join(result.notes)[:4000] or None,
            status=BackupStatus.VERIFIED if result.passed else BackupStatus.CORRUPT,
        )
    )


def not_run(backup_id: uuid.UUID, why: str) -> Update:
    """The catalog's record of a restore test that could not be carried out: the reason in
    ``verify_error``; the backup's status is left as it was."""
    return update(Backup).where(Backup.id == backup_id).values(verify_error=why[:4000])


class VerificationNotRun(TenantryError):
    """The restore test could not be carried out (the scratch server's trouble, not the
    backup's): nothing is known about the backup's soundness."""

    @classmethod
    def of(cls, exc: Exception, backup_id: uuid.UUID, server: URL) -> VerificationNotRun:
        """``exc`` as a one-line reason naming the scratch server, never its password."""
        hint = (
            "Fix the scratch server's problem, then run `tenantry backup verify` again; the "
            "backup itself was kept as it is."
        )
        if isinstance(exc, TenantryError):
            reason, hint = exc.message, exc.hint or hint
        else:
            first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            reason = f"{type(exc).__name__}: {first[0] if first else ''}".rstrip(": ")
        return cls(f"backup {backup_id} could not be verified on {mask(server)}: {reason}", hint)
