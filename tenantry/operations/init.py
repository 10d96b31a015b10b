"""Initialising an installation: the data dir, the key file, and master and billing at head."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from tenantry.crypto import ensure_key_file
from tenantry.db.admin import create_database, database_exists, drop_database
from tenantry.db.configured import connection, target
from tenantry.db.identity import check_owner
from tenantry.db.schemas import Role
from tenantry.errors import ConfigurationError
from tenantry.files import private_dir, tighten
from tenantry.services import schema_ops
from tenantry.settings import Settings

ROLES = (Role.MASTER, Role.BILLING)


def run_init(settings: Settings) -> dict[str, Any]:
    """Create what is missing (data dir, key file, master and billing at head).

    Returns the report ``init --json`` prints; ``report["changes"]`` lists what was done (empty
    when everything existed already). Used by ``tenantry init`` and ``up`` and by the
    benchmarks. All or nothing: when a step fails, what this run created is removed again.
    """
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise ConfigurationError(
            f"the data dir {settings.data_dir} is a file, not a directory.",
            "Set TENANTRY_DATA_DIR to a directory (it is created if missing).",
        )
    _refuse_consumer(settings)
    created = _Created()
    try:
        return _init(settings, created)
    except BaseException:
        created.remove()
        raise


def _refuse_consumer(settings: Settings) -> None:
    """A consumer app may not create a database it could not then migrate: refuse before
    anything is created (a missing database has no identity: its configured owner decides)."""
    for role in ROLES:
        t = target(settings, role)
        if settings.app != settings.owner_of(role) and not database_exists(t.url):
            check_owner(t.spec, None, settings.app, settings.owner_of(role))


class _Created:
    """What one ``init`` run created, to be removed if the run fails."""

    def __init__(self) -> None:
        self.data_dir: Path | None = None
        self.key_file: Path | None = None
        self.databases: list[URL] = []

    def remove(self) -> None:
        # Best effort, newest first: the error that made the run fail is what must be shown.
        for url in reversed(self.databases):
            with contextlib.suppress(Exception):
                drop_database(url)
        if self.key_file is not None:
            self.key_file.unlink(missing_ok=True)
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _init(settings: Settings, created: _Created) -> dict[str, Any]:
    report: dict[str, Any] = {"data_dir": str(settings.data_dir.resolve())}
    done: list[str] = []
    if not settings.data_dir.exists():
        private_dir(settings.data_dir)
        created.data_dir = settings.data_dir
        done.append(f"created data dir {settings.data_dir}")
    if settings.secret_keys is not None:
        report["key_file"] = None
        report["keys"] = "TENANTRY_SECRET_KEYS"
    else:
        report["key_file"] = str(settings.key_file)
        report["keys"] = "key file"
        if ensure_key_file(settings.key_file):
            created.key_file = settings.key_file
            done.append(f"created key file {settings.key_file} (mode 0600)")
    for role in ROLES:
        t = target(settings, role)
        was_created = create_database(t.url)
        if was_created:
            created.databases.append(t.url)
            done.append(f"created {role} database {t.shown}")
        with connection(t, begin=True) as conn:
            result = schema_ops.migrate(
                conn,
                t.spec,
                t.shown,
                acting_app=settings.app,
                owner=settings.owner_of(role),
            )
        if result.stamped_identity:
            done.append(f"stamped {role} identity (instance {result.stamped_identity.instance_id})")
        if result.applied:
            done.append(
                f"migrated {role} to {result.to_revision} ({len(result.applied)} revision(s))"
            )
        report[role.value] = {
            "url": t.shown,
            "database_created": was_created,
            "identity_stamped": result.stamped_identity is not None,
            "applied": result.applied,
            "revision": result.to_revision,
        }
    # Installs made before files were private: customer data must not stay world-readable.
    tightened = tighten(settings.data_dir)
    if tightened:
        done.append(f"made {len(tightened)} file(s) in the data dir private (0600, dirs 0700)")
    report["changes"] = done
    return report
