"""Pre-migration backups (seed 004: "backup taken before deployment"): before any DDL, a
backup of the database is taken, restored into a scratch database and checked, and kept
pinned, labelled with the revisions. If it cannot be taken or fails its check, nothing is
migrated."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from sqlalchemy import inspect
from sqlalchemy.orm import Session, sessionmaker

from tenantry.backup.storage import Storage, storage_for
from tenantry.crypto import SecretBox
from tenantry.db.engines import connect, make_engine
from tenantry.db.master.models import Backup
from tenantry.db.schemas import SchemaSpec
from tenantry.errors import ConfigurationError, MigrationError
from tenantry.operations.backup_take import take_backup
from tenantry.operations.backup_verify import verify_backup
from tenantry.services.backups.targets import BackupTarget, scratch_server
from tenantry.services.fleet_targets import TenantDb
from tenantry.settings import Settings


@dataclass(frozen=True)
class PreMigrationBackups:
    """Takes and verifies the backup that must exist before a database is migrated."""

    sessions: sessionmaker[Session]
    storage: Storage
    settings: Settings
    box: SecretBox
    actor: str
    #: Record the take and its test as operations (not on a master older than that table).
    tracked: bool = True

    def take(self, target: BackupTarget, start: str | None, goal: str | None) -> Backup:
        """Back up ``target`` (at ``start``, about to go to ``goal``) and verify the backup.

        Raises :class:`MigrationError` when the backup fails its check, so the caller
        migrates nothing.
        """
        backup = take_backup(
            self.sessions,
            self.storage,
            target,
            reason="pre-migration",
            label=f"before migrating {start or 'base'} → {goal or 'base'}",
            pinned=True,
            actor=self.actor,
            level=self.settings.backup_zstd_level,
            lease_seconds=self.settings.job_lease_seconds,
            tracked=self.tracked,
            # The migration's own audit entry names its backup; a master not yet at head
            # could not hold these entries either.
            audited=False,
        )
        with self.sessions() as session:
            server = scratch_server(session, self.box, self.settings, backup)
        result = verify_backup(
            self.sessions,
            self.storage,
            backup.id,
            server,
            lease_seconds=self.settings.job_lease_seconds,
            actor=self.actor,
            tracked=self.tracked,
            audited=False,
        )
        if not result.passed:
            raise MigrationError(
                f"the pre-migration backup {backup.id} of {target.scope} failed its restore "
                f"test ({'; '.join(result.problems)}); nothing was migrated.",
                "Fix the backup problem (tenantry backup verify) before migrating.",
            )
        return backup

    def for_tenants(self, spec: SchemaSpec, goal: str | None) -> TenantHook:
        """The hook a fleet run calls before migrating each tenant that has work to do."""
        return TenantHook(self, spec, goal)

    def for_tenants_of(self, spec: SchemaSpec) -> Callable[[str | None], TenantHook]:
        """:meth:`for_tenants` once the goal is known (queued runs read it from master)."""
        return partial(self.for_tenants, spec)


@dataclass(frozen=True)
class TenantHook:
    """``PreMigrationBackups.take`` for one fleet tenant at a time."""

    backups: PreMigrationBackups
    spec: SchemaSpec
    goal: str | None

    def __call__(self, db: TenantDb, start: str | None) -> None:
        target = BackupTarget(self.spec, db.url, db.store_id, db.slug, db.instance_id)
        self.backups.take(target, start, self.goal)


@contextmanager
def standalone(settings: Settings, actor: str) -> Iterator[PreMigrationBackups]:
    """Pre-migration backups recorded in master's catalog without opening the platform
    (``db migrate`` runs while master or billing is behind this code's head revision)."""
    engine = make_engine(settings.master_url, pool_size=1)
    try:
        with connect(engine) as conn:
            tables = inspect(conn).get_table_names()
        has_catalog = "backups" in tables
        if not has_catalog:
            raise ConfigurationError(
                "master has no backup catalog yet (it is older than this tenantry), so a "
                "pre-migration backup cannot be recorded.",
                "Migrate master first (tenantry db migrate --role master --no-backup-first), "
                "or pass --no-backup-first.",
            )
        yield PreMigrationBackups(
            sessionmaker(engine, expire_on_commit=False),
            storage_for(settings),
            settings,
            SecretBox.from_settings(settings),
            actor,
            tracked="operations" in tables,
        )
    finally:
        engine.dispose()
