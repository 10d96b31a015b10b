"""A fresh tenantry installation (data dir, key file, master and billing at head) per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tenantry.crypto import ensure_key_file
from tenantry.db.schemas import billing_schema, master_schema
from tenantry.runtime import Platform
from tenantry.settings import Settings, load_settings
from tests.conftest import DbFactory
from tests.scratch_cleanup import drop_scratch_databases
from tests.templates import migrate_here, migrated_database

ENV_VARS = (
    "DATABASE_URL",
    "DATABASE_URL_BILLING",
    "TENANTRY_DATA_DIR",
    "TENANTRY_SECRET_KEYS",
    "TENANTRY_QUEUE_URL",
    "TENANTRY_QUEUE_NAME",
    "TENANTRY_APP",
    "TENANTRY_TENANT_SCHEMA",
    "TENANTRY_FAILPOINTS",
    "TENANTRY_JOB_LEASE_SECONDS",
    "TENANTRY_RECOVERY_SWEEP_SECONDS",
)


def install(settings: Settings, *, from_templates: bool = True) -> None:
    """What `tenantry init` does, for fixtures: master and billing copied from databases
    migrated once per test process, or (``from_templates=False``, for logins other than the
    server's admin, which would then own the templates) migrated here."""
    ensure_key_file(settings.key_file)
    for spec, url in (
        (master_schema(), settings.master_url),
        (billing_schema(), settings.billing_url),
    ):
        (migrated_database if from_templates else migrate_here)(url, spec)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings of a fresh, initialised installation in a temp data dir (env cleaned); the
    scratch databases its stopped processes left are dropped after the test."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path / "data"))
    current = load_settings()
    install(current)
    yield current
    drop_scratch_databases(current)


@pytest.fixture
def platform(settings: Settings) -> Iterator[Platform]:
    """The installation's platform, closed after the test."""
    opened = Platform.open(settings)
    yield opened
    # Logins are server-wide: the test's databases go with their fixtures, its stores'
    # runtime logins here.
    from tests.store_logins import drop_logins_of_stores

    drop_logins_of_stores(opened)
    opened.close()


@pytest.fixture
def backend_platform(
    backend: str, new_database: DbFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Platform]:
    """A platform whose master and billing databases are on ``backend`` (parametrised)."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TENANTRY_DATA_DIR", str(tmp_path / "data"))
    if backend != "sqlite":
        for var, label in (("DATABASE_URL", "master"), ("DATABASE_URL_BILLING", "billing")):
            url = new_database(label, create=False)
            monkeypatch.setenv(var, url.render_as_string(hide_password=False))
    current = load_settings()
    install(current)
    opened = Platform.open(current)
    yield opened
    opened.close()
    drop_scratch_databases(current)
