"""After a test's tenantry processes stopped: drop the scratch databases of its installation's
backups that are still on the servers.

A worker (``tenantry worker``, or the one ``tenantry up`` starts) runs the backup scheduler
every minute, which takes and restore-tests backups of every database; a test that stops it
with SIGTERM in the middle of a restore test leaves that test's scratch database (Huey's
consumer does not unwind its worker threads on SIGTERM). In production the recovery sweep drops
it once its lease lapses (:func:`tenantry.operations.sweep.drop_abandoned_scratch`); a test's
installation is gone by then, and its scratch databases would outlive the run (the leak check
fails it). Nothing of the installation runs any more when this is called, so every scratch
database of its backups is abandoned: no lease is waited for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from tenantry.db.admin import drop_database
from tenantry.db.engines import make_engine, sqlite_path
from tenantry.db.master.models import Backup
from tenantry.errors import TenantryError
from tenantry.runtime import Platform
from tenantry.services.backups import scratch_sweep
from tenantry.settings import Settings


def drop_scratch_databases(settings: Settings) -> list[str]:
    """Drop every scratch database of the backups of the installation of ``settings`` (whose
    processes have all stopped); their names. An installation without backups costs one
    query; one whose master is gone, or not at head, is skipped."""
    if not _has_backups(settings):
        return []
    try:
        platform = Platform.open(settings)
    except TenantryError:
        return []  # a master the test downgraded: nothing of it to find them by
    dropped: list[str] = []
    try:
        try:
            with platform.sessions() as session:
                servers = scratch_sweep.scratch_servers(session, platform.box, settings)
        except TenantryError:
            servers = []  # a login sealed under a key the test retired: nowhere to look
        for server in servers:
            with contextlib.suppress(TenantryError, SQLAlchemyError):  # a server gone since
                found = scratch_sweep.find_scratch(server)
                with platform.sessions() as session:
                    ours = scratch_sweep.known_prefixes(session, (s.prefix for s in found))
                for scratch in found:
                    if scratch.prefix in ours and drop_database(scratch.url):
                        dropped.append(scratch.name)
    finally:
        platform.close()
    return dropped


def _has_backups(settings: Settings) -> bool:
    path = sqlite_path(settings.master_url)
    if path is not None and not path.is_file():
        return False  # (connecting would create it)
    engine = make_engine(settings.master_url, pooled=False)
    try:
        with engine.connect() as conn:
            return conn.execute(select(Backup.id).limit(1)).first() is not None
    except SQLAlchemyError:
        return False  # no master (dropped with the test), or one without a catalog
    finally:
        engine.dispose()


@contextmanager
def scratch_dropped_after(settings: Settings) -> Iterator[None]:
    """Run the block (which starts and stops the installation's processes), then drop the
    scratch databases they left (:func:`drop_scratch_databases`)."""
    try:
        yield
    finally:
        drop_scratch_databases(settings)
